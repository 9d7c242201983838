package main

import (
	"strconv"
	"strings"
)

// splitArgs parses flags and positional arguments in any order (Go's flag
// package stops at the first positional one, but "coord lock NAME --try"
// must work), up to a "--" after which everything is the command to run.
// It returns the positional arguments, the command, and an exit code when
// parsing ended the program (help or a bad flag), else -1.
func splitArgs(fs *flagSet, args []string) (pos, cmd []string, code int) {
	for i, a := range args {
		if a == "--" {
			args, cmd = args[:i], args[i+1:]
			break
		}
	}
	for {
		if code := parse(fs, args); code >= 0 {
			return nil, nil, code
		}
		if fs.NArg() == 0 {
			return pos, cmd, -1
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// env returns the variables a child process gets on top of coord's own.
func env(kv ...string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+"="+kv[i+1])
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// quoteCmd renders a command line for messages.
func quoteCmd(cmd []string) string {
	q := make([]string, len(cmd))
	for i, c := range cmd {
		if strings.ContainsAny(c, " \t\"'") || c == "" {
			c = strconv.Quote(c)
		}
		q[i] = c
	}
	return strings.Join(q, " ")
}
