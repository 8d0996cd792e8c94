package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// peakRSS is the process's peak resident set in MB (VmHWM), or -1 where
// /proc does not say.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// TestGetMultiOfCopiesIsRefused is the scenario against the real
// binary: GetMulti of 1,000 copies of the key of one 1 MB entity, three at
// once, each a 60 KB request. Each is refused with RESPONSE_TOO_LARGE
// (the answer would be 1 GB) before the server builds anything; a GetMulti
// of 48 copies (48 MB, under the 50 MiB bound) returns every entity. With
// AELOCAL_RSS_FIGURES set, 16 of those run at once too. With -v it logs
// the server's peak RSS (VmHWM) after each step, the figures in
// BENCHMARKS.md:
//
//	AELOCAL_RSS_FIGURES=1 go test -count=1 -v -run TestGetMultiOfCopiesIsRefused ./cmd/aelocal
func TestGetMultiOfCopiesIsRefused(t *testing.T) {
	p := startProc(t)
	ctx := clientContext(t, p)
	pid := p.cmd.Process.Pid
	t.Logf("server RSS peak at start: %.0f MB", peakRSS(pid))
	type big struct {
		B []byte `datastore:",noindex"`
	}
	k := datastore.NewKey(ctx, "Big", "one", 0, nil)
	if _, err := datastore.Put(ctx, k, &big{B: bytes.Repeat([]byte{7}, 1048000)}); err != nil {
		t.Fatal(err)
	}
	keys := func(n int) []*datastore.Key {
		ks := make([]*datastore.Key, n)
		for i := range ks {
			ks[i] = k
		}
		return ks
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := datastore.GetMulti(ctx, keys(1000), make([]big, 1000))
			if err == nil || !strings.Contains(err.Error(), "Call error 9: The response from API call datastore_v3.Get() was too large") {
				t.Errorf("GetMulti of 1,000 copies: %v, want RESPONSE_TOO_LARGE", err)
			}
		}()
	}
	wg.Wait()
	t.Logf("server RSS peak after 3 parallel GetMulti of 1,000 copies: %.0f MB", peakRSS(pid))
	dst := make([]big, 48)
	if err := datastore.GetMulti(ctx, keys(48), dst); err != nil {
		t.Fatal(err)
	}
	for i, e := range dst {
		if len(e.B) != 1048000 {
			t.Fatalf("entity %d: %d bytes", i, len(e.B))
		}
	}
	t.Logf("server RSS peak after a GetMulti of 48 copies (48 MB): %.0f MB", peakRSS(pid))
	if os.Getenv("AELOCAL_RSS_FIGURES") == "" {
		return // the step below is for BENCHMARKS.md: 800 MB through the client
	}
	// Sixteen such answers at once share the answer budget. The deadline
	// only keeps a slow machine (or -race) from failing the calls.
	long, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := datastore.GetMulti(long, keys(48), make([]big, 48)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	t.Logf("server RSS peak after 16 parallel GetMultis of 48 copies: %.0f MB", peakRSS(pid))
}
