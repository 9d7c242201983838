// Command coord runs shell commands under coord's primitives (a lock, a
// leadership, a semaphore permit), works a coord queue, shows who holds
// what, starts a local etcd for development, and runs the demo and the
// side-by-side benchmarks.
//
//	coord lock NAME -- CMD...         run CMD while holding the lock
//	coord elect NAME VALUE -- CMD...  run CMD only while leader
//	coord leader NAME                 print the current leader
//	coord observe NAME                print every leadership change
//	coord sem NAME --capacity N -- CMD...
//	coord queue push|claim|len|dead|redrive|discard NAME ...
//	coord schedule list|history|pause|resume|trigger [NAME]
//	coord group NAME                  a group's live members
//	coord shard NAME                  a shard map: owners, targets, loads
//	coord status [--kind KIND] [NAME] who holds what
//	coord ui [--listen ADDR]          a live page of who holds what, on loopback
//	coord dev                         an embedded etcd on 127.0.0.1:2379
//	coord demo                        the story of three replicas, on an embedded etcd
//	coord bench                       coord vs etcd's own recipes, as a markdown table
//	coord completion bash|zsh|fish    a shell completion script
//	coord version                     what this binary was built from
//
// Endpoints come from --endpoints or ETCDCTL_ENDPOINTS (default
// 127.0.0.1:2379); TLS and auth flags are etcdctl's.
//
// Exit status, for every command: CMD's own status when coord ran one
// (128+N when signal N ended it, 126 when it could not be started, 127
// when it was not found); 1 when coord failed (etcd unreachable, a TLS or
// auth error, a lost hold before CMD started); 2 for a usage error; 3 when
// 'coord leader' finds no leader; 75 (or --conflict-exit) when --try found
// the lock, permits or message taken, or --wait ran out.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes coord itself uses; a child's own status passes through.
const (
	exitFail     = 1
	exitUsage    = 2
	exitNoLeader = 3
	// exitConflict is sysexits' EX_TEMPFAIL ("try again later"), which is
	// what a --try that found the lock taken means, and a code ordinary
	// commands rarely use, so a script can tell "skipped" from "CMD ran
	// and failed". --conflict-exit picks another.
	exitConflict = 75
)

// command is one subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdout, stderr io.Writer) int) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersion(args[1:], stdout, stderr)
	}
	if args[0] == reaperArg {
		return runReaper(args[1:])
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "coord: unknown command %q; run 'coord -h' for the list\n", args[0])
		return exitUsage
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: coord COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'coord COMMAND -h' for a command's flags.")
}

// flagSet is a command's flags and where its messages go.
type flagSet struct {
	*flag.FlagSet
	cmd      string // "lock", "queue claim"
	synopsis string
	stderr   io.Writer
}

// newFlags returns a flag set that never exits the process and never
// prints on its own: parse prints the whole help for -h, and one line for
// a bad flag.
func newFlags(name, synopsis string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("coord "+name, flag.ContinueOnError), cmd: name, synopsis: synopsis, stderr: stderr}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// help prints the command's whole help: synopsis, text and flags.
func (fs *flagSet) help() {
	fmt.Fprintf(fs.stderr, "usage: coord %s %s\n\nflags:\n", fs.cmd, fs.synopsis)
	fs.SetOutput(fs.stderr)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses flags; it returns the exit code to use when parsing ended
// the command (help or a bad flag), or -1 to go on.
func parse(fs *flagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.help()
			return 0
		}
		return usageErr(fs, fs.stderr, "%v", err)
	}
	return -1
}

// usageErr prints a usage problem as one line that says where the help
// is, and returns the usage exit code. Every usage error is found before
// coord connects to etcd.
func usageErr(fs *flagSet, stderr io.Writer, format string, a ...any) int {
	msg := fmt.Sprintf(format, a...)
	// Messages may name their command already ("lock: ..."); say it once.
	msg = strings.TrimPrefix(msg, fs.cmd+": ")
	fmt.Fprintf(stderr, "coord %s: %s; run 'coord %s -h' for usage\n", fs.cmd, msg, fs.cmd)
	return exitUsage
}

// fail prints a one-line error and returns the exit code for it.
func fail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "coord: "+format+"\n", a...)
	return exitFail
}
