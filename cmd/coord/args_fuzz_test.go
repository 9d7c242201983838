package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// errFuzzDial stands in for the connection in FuzzArgs: a command that
// returns it got past every usage check.
var errFuzzDial = errors.New("fuzz: dial skipped")

// notParsed are the commands FuzzArgs leaves out, because arguments that
// parse make them do something for real before any etcd connection: dev
// starts an etcd and waits for a signal, demo and bench start servers and
// run for seconds, and the hidden reaper kills its process group.
var notParsed = map[string]bool{"dev": true, "demo": true, "bench": true, reaperArg: true}

// FuzzArgs runs the CLI on arbitrary arguments (NUL-separated in one
// string) and checks what users and scripts rely on: no panic; exit 0
// (help, version, completion), 2 for a usage error with its one-line
// message, or, for arguments that pass every usage check, the failure of
// the connection that comes next, which is never dialed here. A usage
// error is always found before connecting.
func FuzzArgs(f *testing.F) {
	for _, args := range [][]string{
		{},
		{"-h"},
		{"lock"},
		{"lock", "backup", "--", "pg_dump"},
		{"lock", "backup", "--try", "--wait", "1s", "--", "true"},
		{"lock", "--ttl", "500ms", "x", "--", "true"},
		{"lock", "x", "--lock-delay", "1500ms", "--", "true"},
		{"lock", "bad\xffname", "--", "true"},
		{"sem", "gpu", "--capacity", "4", "--", "train"},
		{"sem", "gpu", "--capacity", "-1", "--", "train"},
		{"elect", "api", "10.0.0.7", "--", "serve"},
		{"leader", "api", "-o", "json"},
		{"observe", "api"},
		{"transfer", "api"},
		{"queue", "push", "jobs", "payload", "--priority", "3", "--delay", "1s"},
		{"queue", "push", "jobs", "p", "--unique-for", "1m"},
		{"queue", "claim", "jobs", "--", "work"},
		{"queue", "len", "jobs", "-o", "json"},
		{"queue", "dead", "jobs"},
		{"queue", "redrive", "jobs", "id"},
		{"queue", "ack", "jobs"},
		{"queue", "config", "jobs", "--max-attempts", "0"},
		{"schedule", "list"},
		{"schedule", "history", "nightly"},
		{"schedule", "trigger", "nightly", "--prefix", "lock/"},
		{"group", "web"},
		{"shard", "users"},
		{"status", "--kind", "lock", "backup"},
		{"status", "--endpoints", ""},
		{"completion", "zsh"},
		{"version", "-o", "json"},
		{"lock", "x", "--dial-timeout", "0s", "--", "true"},
		{"lock", "x", "--cert", "c.pem", "--", "true"},
		{"queue", "push", "jobs", "--", "x"},
	} {
		f.Add(strings.Join(args, "\x00"))
	}
	f.Fuzz(func(t *testing.T, joined string) {
		var args []string
		if joined != "" {
			args = strings.Split(joined, "\x00")
		}
		if len(args) > 0 && notParsed[args[0]] {
			return
		}
		dialed := false
		beforeDial = func(*connFlags) error { dialed = true; return errFuzzDial }
		defer func() { beforeDial = nil }()
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		msg := stderr.String()
		switch code {
		case 0:
			if dialed {
				t.Fatalf("coord %q: exit 0 after connecting, which the test never lets happen", args)
			}
		case exitUsage:
			if dialed {
				t.Fatalf("coord %q: a usage error found only after connecting: %s", args, msg)
			}
			if !strings.HasPrefix(msg, "coord") && !strings.HasPrefix(msg, "usage:") {
				t.Fatalf("coord %q: exit 2 without a usage message: %q", args, msg)
			}
		case exitFail:
			if !dialed && !strings.Contains(msg, "TLS") {
				t.Fatalf("coord %q: exit 1 before connecting, not for a usage error: %s", args, msg)
			}
			if dialed && !strings.Contains(msg, errFuzzDial.Error()) {
				t.Fatalf("coord %q: the connection's error is lost: %s", args, msg)
			}
		default:
			t.Fatalf("coord %q: exit %d before connecting; stderr: %s", args, code, msg)
		}
	})
}

// TestUsageBeforeConnecting: a usage rule checked only after the
// connection (queue push's --unique-for was) costs a dial and, with no
// PAYLOAD, waits on stdin before saying the arguments were wrong.
func TestUsageBeforeConnecting(t *testing.T) {
	for _, args := range [][]string{
		{"queue", "push", "jobs", "p", "--unique-for", "1m"},
		{"queue", "push", "jobs", "--unique", "k", "--unique-for", "-1s"},
	} {
		dialed := false
		beforeDial = func(*connFlags) error { dialed = true; return errFuzzDial }
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		beforeDial = nil
		if code != exitUsage || dialed {
			t.Errorf("coord %q: exit %d, dialed %v; want a usage error (2) before connecting: %s", args, code, dialed, stderr.String())
		}
	}
}
