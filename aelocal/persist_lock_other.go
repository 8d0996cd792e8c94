//go:build !unix

package aelocal

import "os"

// lockFile does nothing where flock is not available: there, nothing stops
// two servers from sharing a datastore file.
func lockFile(f *os.File) error { return nil }
