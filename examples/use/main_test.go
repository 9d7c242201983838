package main

import (
	"bytes"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/coord-go/coord/etcdtest"
)

// The README's "Use" section shows this program; it must be this program,
// so that what people paste compiles.
func TestReadmeShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n## Use\n")
	if !ok {
		t.Fatal("README has no ## Use section")
	}
	_, block, ok := strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal("README's Use section has no go block")
	}
	block, _, _ = strings.Cut(block, "```")
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	// main.go starts with its own doc comment; the README shows the rest.
	code := string(src[strings.Index(string(src), "package main"):])
	if block != code {
		t.Errorf("README's Use block differs from examples/use/main.go:\n--- README\n%s\n--- main.go\n%s", block, code)
	}
}

func TestUseRuns(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	t.Setenv("ETCDCTL_ENDPOINTS", strings.Join(srv.Endpoints(), ","))
	var out bytes.Buffer
	log.SetOutput(&out)
	defer log.SetOutput(os.Stderr)
	main()
	if !strings.Contains(out.String(), `holding lock "backup", token `) {
		t.Errorf("output %q", out.String())
	}
}
