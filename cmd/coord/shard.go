package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	cgroup "github.com/coord-go/coord/group"
	"github.com/coord-go/coord/shard"
)

func init() {
	register("group", "print a group's live members, their weights and metadata", runGroup)
	register("shard", "print a shard map: who owns each shard, who it moves to, each member's share", runShard)
}

const groupHelp = `NAME [--prefix coord/] [-o text|json]

Prints the live members of the group NAME, one a line, sorted by id:

  ID  WEIGHT  TOKEN  LEASE  META

where TOKEN is the create revision of the member's key (it grows with
every join) and META its metadata as k=v pairs. With -o json, one object
{"group":NAME,"rev":REV,"members":[{"id","weight","token","lease","meta"}]}.
Reads only; needs no session.

Exit status: 0 (an empty group prints no rows); 1 when etcd cannot be
reached or read; 2 for bad usage.`

type groupJSON struct {
	Group   string            `json:"group"`
	Rev     int64             `json:"rev"`
	Members []groupMemberJSON `json:"members"`
}

type groupMemberJSON struct {
	ID     string            `json:"id"`
	Weight int64             `json:"weight"`
	Token  int64             `json:"token"`
	Lease  string            `json:"lease"`
	Meta   map[string]string `json:"meta,omitempty"`
}

func runGroup(args []string, stdout, stderr io.Writer) int {
	h, o, name, code := nameOnly("group", groupHelp, args, stderr)
	if code >= 0 {
		return code
	}
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "group %q: %v", name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), h.conn.dialTimeout+5*time.Second)
	defer cancel()
	v, err := cgroup.New(cli, name, cgroup.WithPrefix(h.prefix)).Members(ctx)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if o.json() {
		out := groupJSON{Group: name, Rev: v.Rev, Members: []groupMemberJSON{}}
		for _, m := range v.Members {
			out.Members = append(out.Members, groupMemberJSON{ID: m.ID, Weight: m.Weight, Token: m.Token, Lease: fmt.Sprintf("%x", int64(m.Lease)), Meta: m.Meta})
		}
		return writeJSON(stdout, stderr, out)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWEIGHT\tTOKEN\tLEASE\tMETA")
	for _, m := range v.Members {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%x\t%s\n", m.ID, m.Weight, m.Token, int64(m.Lease), metaText(m.Meta))
	}
	tw.Flush()
	return 0
}

func metaText(meta map[string]string) string {
	if len(meta) == 0 {
		return "-"
	}
	out := make([]string, 0, len(meta))
	for k, v := range meta {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

const shardHelp = `NAME [--prefix coord/] [-o text|json]

Prints the shard map NAME as its members see it: first each running
member's share,

  MEMBER  WEIGHT  OWNED  QUOTA

then one row per shard,

  SHARD  OWNER  TOKEN  TARGET

where TOKEN is the ownership's fencing token and TARGET the member the
plan moves the shard to ("-" when it stays). A last line says whether
the map has converged (every shard with its planned owner). With -o json,
the whole table: {"map","group","rev","converged","members":[...],
"shards":[...]}. Reads only; needs no session.

Exit status: 0; 1 when etcd cannot be reached or read, or when no member
has run the map; 2 for bad usage.`

type shardJSON struct {
	Map       string           `json:"map"`
	Group     string           `json:"group"`
	Rev       int64            `json:"rev"`
	Converged bool             `json:"converged"`
	Members   []shardLoadJSON  `json:"members"`
	Shards    []shardOwnerJSON `json:"shards"`
}

type shardLoadJSON struct {
	ID     string `json:"id"`
	Weight int64  `json:"weight"`
	Owned  int    `json:"owned"`
	Quota  int    `json:"quota"`
}

type shardOwnerJSON struct {
	Shard  string `json:"shard"`
	Owner  string `json:"owner,omitempty"`
	Token  int64  `json:"token,omitempty"`
	Target string `json:"target,omitempty"`
}

func runShard(args []string, stdout, stderr io.Writer) int {
	h, o, name, code := nameOnly("shard", shardHelp, args, stderr)
	if code >= 0 {
		return code
	}
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "shard map %q: %v", name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), h.conn.dialTimeout+5*time.Second)
	defer cancel()
	tb, err := shard.NewObserver(cli, name, shard.WithPrefix(h.prefix)).Table(ctx)
	if errors.Is(err, shard.ErrUnknownShard) {
		return fail(stderr, "shard map %q: no member has run it under %s", name, h.prefix)
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if o.json() {
		out := shardJSON{Map: name, Group: tb.Group, Rev: tb.Rev, Converged: tb.Converged, Members: []shardLoadJSON{}, Shards: []shardOwnerJSON{}}
		for _, l := range tb.Members {
			out.Members = append(out.Members, shardLoadJSON{ID: l.ID, Weight: l.Weight, Owned: l.Owned, Quota: l.Quota})
		}
		for _, a := range tb.Shards {
			out.Shards = append(out.Shards, shardOwnerJSON{Shard: a.Shard, Owner: a.Owner, Token: a.Token, Target: a.Target})
		}
		return writeJSON(stdout, stderr, out)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tWEIGHT\tOWNED\tQUOTA")
	for _, l := range tb.Members {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", l.ID, l.Weight, l.Owned, l.Quota)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SHARD\tOWNER\tTOKEN\tTARGET")
	for _, a := range tb.Shards {
		target := "-"
		if a.Target != a.Owner {
			target = orDashStr(a.Target)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", a.Shard, orDashStr(a.Owner), a.Token, target)
	}
	tw.Flush()
	if tb.Converged {
		fmt.Fprintf(stdout, "converged: %d shards over %d members of group %q\n", len(tb.Shards), len(tb.Members), tb.Group)
	} else {
		fmt.Fprintf(stdout, "moving: not every shard is with its planned owner yet\n")
	}
	return 0
}

func orDashStr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
