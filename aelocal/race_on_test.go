//go:build race

package aelocal

// raceDetector reports whether the tests run with the race detector, which
// makes them several times slower: tests that load large data sets load
// less under it.
const raceDetector = true
