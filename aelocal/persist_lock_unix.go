//go:build unix

package aelocal

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on f, without waiting, so that
// two servers never append to one datastore file. The lock goes away with
// the process, however it ends.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
