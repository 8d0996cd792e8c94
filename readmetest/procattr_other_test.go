//go:build unix && !linux

package readmetest

import "syscall"

// dieWithTest does nothing where the system cannot tie a child's life to
// its parent's; the test's cleanups still stop the processes it starts.
func dieWithTest(attr *syscall.SysProcAttr) {}
