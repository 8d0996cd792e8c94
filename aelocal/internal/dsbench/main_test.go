package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
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

// TestRunAPI runs the bench against a server it did not start, as it
// measures the Python reference server: an aelocal behind a front that
// answers the reference's POST /reset (here by counting it) and passes
// every other request on.
func TestRunAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200 entities through the client")
	}
	srv := aelocal.RunT(t)
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var resets atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/reset" {
			resets.Add(1)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer front.Close()
	t.Setenv("GAE_APPLICATION", "") // the bench sets dev~aelocal, aelocal's app
	var out bytes.Buffer
	if err := run([]string{"-api", strings.TrimPrefix(front.URL, "http://"), "-pid", strconv.Itoa(os.Getpid()), "-n", "200", "-reps", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	if resets.Load() != 1 {
		t.Errorf("%d resets, want 1 (one size)", resets.Load())
	}
	table := out.String()
	for _, l := range strings.Split(table, "\n") {
		switch {
		case strings.Contains(l, "kind query, limit 20"), strings.Contains(l, "RSS per entity, after the load"):
			if strings.HasSuffix(l, "|  |") {
				t.Errorf("row has no figure: %s", l)
			}
		case strings.Contains(l, "restart from the file"), strings.Contains(l, "datastore file"):
			if !strings.HasSuffix(l, "|  |") {
				t.Errorf("a running server has no file and no restart, got: %s", l)
			}
		}
	}
}
