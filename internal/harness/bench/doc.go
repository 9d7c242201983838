// Package bench runs coord's primitives side by side with etcd's own
// concurrency package and experimental recipes, on the same server in the
// same run, and renders the result as one markdown table. It is what
// 'coord bench' prints; the per-package benchmarks (go test -bench) measure
// the same things through testing.B.
//
// Every case gives each participant its own client with an
// etcdtest.Counter attached, so RPCs per operation count what really went
// over the wire, session keepalives included, for both sides alike.
//
// # Safety
//
// Each case uses keys under its own prefix and deletes them afterwards, so
// running it against a shared cluster (--endpoints) leaves nothing behind;
// it still adds load, so do not point it at production.
package bench
