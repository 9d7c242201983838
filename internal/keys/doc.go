// Package keys owns coord's keyspace: it validates every user-supplied name
// and builds every etcd key, so that no two names can ever share a key or
// fall inside each other's ranges.
//
// Layout: <root><kind>/<escaped name>/<part>/<id>. The escaped name never
// contains '/', so the prefix "<root><kind>/<escaped name>/" of one name is
// never a prefix of another name's keys. etcd's concurrency.Mutex puts "a"
// and "a/b" (or "x" and "xy" when no separator is added) in overlapping
// ranges; this package exists so that mistake cannot be made twice.
//
// # Safety
//
// Names are validated before any key is built, and escaping is injective,
// so two distinct names can never produce overlapping key ranges (a fuzz
// test holds this). Everything here is pure string work, safe for
// concurrent use.
package keys
