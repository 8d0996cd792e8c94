//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes cmd's process die with the test binary, even when the
// test crashes before its cleanups run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
