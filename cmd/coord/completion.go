package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/coord-go/coord/inspect"
)

func init() {
	register("completion", "print a shell completion script: bash, zsh or fish", runCompletion)
}

const completionHelp = `bash|zsh|fish

Prints a script that completes coord's commands, queue subcommands,
flags, --kind and -o values, and after "--" the command to run:

  bash:  source <(coord completion bash)     (or save it in /etc/bash_completion.d/coord)
  zsh:   source <(coord completion zsh)      (after compinit; or save it as _coord in $fpath)
  fish:  coord completion fish > ~/.config/fish/completions/coord.fish`

// connFlagNames are the flags of every command that talks to etcd.
var connFlagNames = []string{"endpoints", "dial-timeout", "cacert", "cert", "key", "insecure-skip-tls-verify", "user", "password"}

// holdFlagNames are the flags of the commands that hold something.
var holdFlagNames = append([]string{"ttl", "prefix", "grace"}, connFlagNames...)

// completions lists each command's flags (without dashes), for the
// scripts; a test checks it against every command's -h.
var completions = map[string][]string{
	"lock":          append([]string{"try", "wait", "conflict-exit", "lock-delay"}, holdFlagNames...),
	"sem":           append([]string{"capacity", "weight", "try", "wait", "conflict-exit"}, holdFlagNames...),
	"elect":         append([]string{"priority", "rule", "once", "wait", "conflict-exit"}, holdFlagNames...),
	"transfer":      append([]string{"prefix", "wait"}, connFlagNames...),
	"leader":        append([]string{"prefix", "o"}, connFlagNames...),
	"observe":       append([]string{"prefix", "o"}, connFlagNames...),
	"group":         append([]string{"prefix", "o"}, connFlagNames...),
	"shard":         append([]string{"prefix", "o"}, connFlagNames...),
	"status":        append([]string{"prefix", "kind", "name", "o"}, connFlagNames...),
	"queue push":    append([]string{"prefix", "priority", "delay", "idempotency-key", "unique", "unique-for"}, connFlagNames...),
	"queue claim":   append([]string{"prefix", "o", "ttl", "grace", "wait", "conflict-exit", "nack-delay", "max-attempts"}, connFlagNames...),
	"queue len":     append([]string{"prefix", "o"}, connFlagNames...),
	"queue dead":    append([]string{"prefix", "o"}, connFlagNames...),
	"queue redrive": append([]string{"prefix"}, connFlagNames...),
	"queue discard": append([]string{"prefix"}, connFlagNames...),
	"queue config":  append([]string{"prefix", "o", "max-attempts", "backoff-min", "backoff-max", "jitter", "dead-retention"}, connFlagNames...),
	"schedule":      append([]string{"prefix", "o"}, connFlagNames...),
	"ui":            append([]string{"prefix", "listen", "allow-actions"}, connFlagNames...),
	"dev":           {"port", "data-dir"},
	"demo":          {"ticks"},
	"bench":         {"short", "duration", "only", "endpoints"},
	"completion":    {},
	"version":       {"o"},
}

var queueSubcommands = []string{"push", "claim", "len", "dead", "redrive", "discard", "config"}

func runCompletion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("completion", completionHelp, stderr)
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return usageErr(fs, stderr, "want one shell: bash, zsh or fish")
	}
	switch pos[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion())
	case "zsh":
		fmt.Fprint(stdout, zshCompletion())
	case "fish":
		fmt.Fprint(stdout, fishCompletion())
	default:
		return usageErr(fs, stderr, "unknown shell %q: want bash, zsh or fish", pos[0])
	}
	return 0
}

// dashed renders flag names as the scripts offer them: one dash for
// single letters, two for words (Go's flag package takes either).
func dashed(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		if len(n) == 1 {
			out[i] = "-" + n
		} else {
			out[i] = "--" + n
		}
	}
	return strings.Join(out, " ")
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// sortedCompletions returns the keys of completions, sorted, so every
// script comes out the same.
func sortedCompletions() []string {
	var keys []string
	for k := range completions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for coord: source <(coord completion bash)
_coord() {
    local cur prev cmd i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    # After "--" comes the command coord runs: complete it as a command line.
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ "${COMP_WORDS[i]}" == "--" ]]; then
            if ((i + 1 == COMP_CWORD)); then
                COMPREPLY=($(compgen -c -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi
            return 0
        fi
    done
    if ((COMP_CWORD == 1)); then
`)
	fmt.Fprintf(&b, "        COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(append(commandNames(), "--version", "-h"), " "))
	b.WriteString(`        return 0
    fi
    cmd="${COMP_WORDS[1]}"
    if [[ "$cmd" == queue ]]; then
        if ((COMP_CWORD == 2)); then
`)
	fmt.Fprintf(&b, "            COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(queueSubcommands, " "))
	b.WriteString(`            return 0
        fi
        cmd="queue ${COMP_WORDS[2]}"
    fi
    case "$prev" in
`)
	fmt.Fprintf(&b, "    --kind | -kind) COMPREPLY=($(compgen -W %q -- \"$cur\")); return 0 ;;\n", strings.Join(inspect.Kinds(), " "))
	b.WriteString(`    -o | --o) COMPREPLY=($(compgen -W "text json" -- "$cur")); return 0 ;;
    --cacert | --cert | --key | --data-dir | -cacert | -cert | -key | -data-dir) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    esac
    if [[ "$cmd" == completion ]]; then
        COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
        return 0
    fi
    local flags=""
    case "$cmd" in
`)
	for _, k := range sortedCompletions() {
		fmt.Fprintf(&b, "    %q) flags=%q ;;\n", k, dashed(completions[k])+" -h")
	}
	b.WriteString(`    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags --" -- "$cur"))
    fi
    return 0
}
complete -o default -F _coord coord
`)
	return b.String()
}

func zshCompletion() string {
	var b strings.Builder
	b.WriteString(`#compdef coord
# zsh completion for coord: source <(coord completion zsh), after compinit.
_coord() {
    local -a cmds flags
    local cmd i
`)
	b.WriteString("    cmds=(\n")
	for _, n := range commandNames() {
		fmt.Fprintf(&b, "        %s\n", zshQuote(n+":"+commands[n].summary))
	}
	b.WriteString("    )\n")
	b.WriteString(`    # After "--" comes the command coord runs: complete it as a command line.
    for ((i = 2; i < CURRENT; i++)); do
        if [[ "${words[i]}" == "--" ]]; then
            shift $i words
            (( CURRENT -= i ))
            _normal
            return
        fi
    done
    if (( CURRENT == 2 )); then
        _describe -t commands 'coord command' cmds
        return
    fi
    cmd="${words[2]}"
    if [[ "$cmd" == queue ]]; then
        if (( CURRENT == 3 )); then
`)
	fmt.Fprintf(&b, "            compadd -- %s\n", strings.Join(queueSubcommands, " "))
	b.WriteString(`            return
        fi
        cmd="queue ${words[3]}"
    fi
    case "${words[CURRENT-1]}" in
`)
	fmt.Fprintf(&b, "    --kind|-kind) compadd -- %s; return ;;\n", strings.Join(inspect.Kinds(), " "))
	b.WriteString(`    -o|--o) compadd -- text json; return ;;
    --cacert|--cert|--key|--data-dir|-cacert|-cert|-key|-data-dir) _files; return ;;
    esac
    if [[ "$cmd" == completion ]]; then
        compadd -- bash zsh fish
        return
    fi
    case "$cmd" in
`)
	for _, k := range sortedCompletions() {
		fmt.Fprintf(&b, "    %s) flags=(%s -h) ;;\n", zshQuote(k), dashed(completions[k]))
	}
	b.WriteString(`    esac
    if [[ "${words[CURRENT]}" == -* ]]; then
        compadd -- $flags --
    fi
}
if [[ "${funcstack[1]}" == _coord ]]; then
    _coord "$@"
else
    compdef _coord coord
fi
`)
	return b.String()
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for coord: coord completion fish > ~/.config/fish/completions/coord.fish\n")
	b.WriteString("complete -c coord -f\n")
	for _, n := range commandNames() {
		fmt.Fprintf(&b, "complete -c coord -n __fish_use_subcommand -a %s -d %s\n", n, zshQuote(commands[n].summary))
	}
	fmt.Fprintf(&b, "complete -c coord -n '__fish_seen_subcommand_from queue; and not __fish_seen_subcommand_from %s' -a %s\n",
		strings.Join(queueSubcommands, " "), zshQuote(strings.Join(queueSubcommands, " ")))
	b.WriteString("complete -c coord -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	for _, k := range sortedCompletions() {
		cond := "__fish_seen_subcommand_from " + k
		if sub, ok := strings.CutPrefix(k, "queue "); ok {
			cond = "__fish_seen_subcommand_from queue; and __fish_seen_subcommand_from " + sub
		}
		for _, f := range completions[k] {
			opt := "-l " + f
			if len(f) == 1 {
				opt = "-s " + f
			}
			extra := ""
			switch f {
			case "kind":
				extra = " -x -a " + zshQuote(strings.Join(inspect.Kinds(), " "))
			case "o":
				extra = " -x -a 'text json'"
			case "cacert", "cert", "key", "data-dir":
				extra = " -r -F"
			}
			fmt.Fprintf(&b, "complete -c coord -n %s %s%s\n", zshQuote(cond), opt, extra)
		}
	}
	return b.String()
}
