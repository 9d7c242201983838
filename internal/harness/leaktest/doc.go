// Package leaktest holds the tests that many cancelled waits on one
// session leave nothing behind: no keys under the root, no goroutines, no
// watches. It has no API; the tests are in cancel_test.go.
//
// # Safety
//
// The tests run against a real embedded etcd (etcdtest) and check what
// users of a long-lived session rely on: a Lock, Acquire or Claim whose
// context ends before the grant costs nothing once it has returned.
package leaktest
