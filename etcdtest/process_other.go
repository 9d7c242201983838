//go:build !linux

package etcdtest

import "os/exec"

// dieWithParent has no equivalent here: a killed test binary leaves its
// etcd processes running until they are killed by hand.
func dieWithParent(*exec.Cmd) {}
