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
//	coord queue push|claim|ack|len|dead|redrive NAME ...
//	coord status [PREFIX]             who holds what
//	coord dev                         an embedded etcd on 127.0.0.1:2379
//	coord demo                        the story of three replicas, on an embedded etcd
//	coord bench                       coord vs etcd's own recipes, as a markdown table
//
// Endpoints come from --endpoints or ETCDCTL_ENDPOINTS (default
// 127.0.0.1:2379); TLS and auth flags are etcdctl's.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
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
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "coord: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
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

// newFlags returns a flag set that prints its usage line to stderr and
// never exits the process.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("coord "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: coord %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns the exit code to use when parsing ended
// the command (help or a bad flag), or -1 to go on.
func parse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	return -1
}

// fail prints a one-line error and returns the exit code for it.
func fail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "coord: "+format+"\n", a...)
	return 1
}
