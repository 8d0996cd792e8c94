//go:build linux

package readmetest

import "syscall"

// dieWithTest makes the process die with the test binary, even when the
// test crashes before its cleanups run.
func dieWithTest(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
