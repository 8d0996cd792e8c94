//go:build !linux

package main

import "os/exec"

// dieWithTest does nothing where the system cannot tie a child's life to
// its parent's; the tests' cleanups still stop the processes they start.
func dieWithTest(cmd *exec.Cmd) {}
