package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// gcPercent reads the collector's setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestGCPercentEnvironmentWins pins that aelocal's own setting of the
// collector applies only where the environment sets no GOGC: the runtime
// applies GOGC at the process's start, and setGCPercent leaves it.
func TestGCPercentEnvironmentWins(t *testing.T) {
	orig := gcPercent()
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	for _, c := range []struct {
		env     string
		runtime int // what the runtime made of env at the start
	}{
		{"80", 80},
		{"100", 100},
		{"off", -1},
	} {
		debug.SetGCPercent(c.runtime)
		t.Setenv("GOGC", c.env)
		setGCPercent()
		if got := gcPercent(); got != c.runtime {
			t.Errorf("GOGC=%s: the collector's setting is %d, want %d", c.env, got, c.runtime)
		}
	}
	for _, unset := range []bool{true, false} {
		debug.SetGCPercent(100)
		if unset {
			os.Unsetenv("GOGC") // t.Setenv above restores it
		} else {
			t.Setenv("GOGC", "")
		}
		setGCPercent()
		if got := gcPercent(); got != defaultGCPercent {
			t.Errorf("GOGC unset (%v) or empty: the collector's setting is %d, want %d", unset, got, defaultGCPercent)
		}
	}
}
