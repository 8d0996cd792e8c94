package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun runs the bench as BENCHMARKS.md says, at its smallest size: it
// builds cmd/aelocal, loads 200 entities through the appengine/v2 client,
// and takes every figure of the table.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/aelocal")
	}
	var out bytes.Buffer
	if err := run([]string{"-n", "200", "-reps", "1", "-walk"}, &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, row := range []string{"kind query, limit 20", "equality ~1%", "order by a time", "page after a cursor", "Get of 100 keys",
		"a Put alone", "a Put during queries", "Count", "walk by cursor", "restart from the file", "RSS per entity, after the load",
		"server CPU during the load", "server CPU of the restart"} {
		line := ""
		for _, l := range strings.Split(table, "\n") {
			if strings.Contains(l, row) {
				line = l
			}
		}
		// Every row has a figure for the size (RSS and CPU only where
		// /proc has them).
		if line == "" || strings.HasSuffix(line, "|  |") && !strings.Contains(row, "RSS") && !strings.Contains(row, "CPU") {
			t.Errorf("row %q has no figure:\n%s", row, table)
		}
	}
	if err := run([]string{"-n", "10"}, &out); err == nil {
		t.Error("a size under 200 was accepted")
	}
}
