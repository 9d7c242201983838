package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func init() {
	register("version", "print what this binary was built from (also: coord --version)", runVersion)
}

const versionHelp = `[-o text|json]

Prints coord's module version (v0.1.0 for a release installed with go
install ...@v0.1.0; "(devel)" for a build from a checkout), the commit it
was built from with its time and whether the tree had changes (when the
build recorded them), the Go version, and the version of the etcd client
it speaks with.`

// buildInfo is what version prints.
type buildInfo struct {
	Version    string `json:"version"`
	Revision   string `json:"revision,omitempty"`
	Time       string `json:"time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
	EtcdClient string `json:"etcd_client,omitempty"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version, b.Go = bi.Main.Version, bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	for _, d := range bi.Deps {
		if d.Path == "go.etcd.io/etcd/client/v3" {
			b.EtcdClient = d.Version
			if d.Replace != nil {
				b.EtcdClient = d.Replace.Version + " (replaced)"
			}
		}
	}
	return b
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", versionHelp, stderr)
	var o outputFlag
	o.register(fs)
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 0 {
		return usageErr(fs, stderr, "unexpected argument %q", pos[0])
	}
	if code := o.check(fs); code >= 0 {
		return code
	}
	b := readBuildInfo()
	if o.json() {
		return writeJSON(stdout, stderr, b)
	}
	fmt.Fprintf(stdout, "coord %s\n", b.Version)
	if b.Revision != "" {
		mod := ""
		if b.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(stdout, "commit:      %s%s\n", b.Revision, mod)
	}
	if b.Time != "" {
		fmt.Fprintf(stdout, "commit time: %s\n", b.Time)
	}
	fmt.Fprintf(stdout, "go:          %s %s\n", b.Go, b.Platform)
	if b.EtcdClient != "" {
		fmt.Fprintf(stdout, "etcd client: %s\n", b.EtcdClient)
	}
	return 0
}
