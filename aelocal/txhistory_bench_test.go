package aelocal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// This file uses the exported API only, so that the same benchmark runs
// against earlier versions of aelocal.

// BenchmarkTxHistoryPinned measures the memory one open transaction pins:
// it reads an entity of 1 MB, and while it stays open another client
// overwrites that entity 500 times. heap-MB is the Go heap in use and
// rss-MB the process's resident set, both after a GC, at the highest of
// ten checkpoints (every 50 overwrites).
//
//	go test -run '^$' -bench TxHistoryPinned -benchtime 1x ./aelocal
func BenchmarkTxHistoryPinned(b *testing.B) {
	for range b.N {
		s, err := aelocal.NewServer()
		if err != nil {
			b.Fatal(err)
		}
		ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
		k := datastore.NewKey(ctx, "Big", "b", 0, nil)
		val := func(i int) *txBig {
			v := bytes.Repeat([]byte{'x'}, 1000000)
			copy(v, strconv.Itoa(i))
			return &txBig{V: v}
		}
		if _, err := datastore.Put(ctx, k, val(0)); err != nil {
			b.Fatal(err)
		}
		var heap, rss float64
		done := errors.New("done")
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if err := datastore.Get(tc, k, &txBig{}); err != nil {
				return err
			}
			for i := 1; i <= 500; i++ {
				if _, err := datastore.Put(ctx, k, val(i)); err != nil {
					return err
				}
				if i%50 == 0 {
					h, r := memoryInUse()
					heap, rss = max(heap, h), max(rss, r)
				}
			}
			return done
		}, nil)
		if err != done {
			b.Fatal(err)
		}
		s.Close()
		b.ReportMetric(heap, "heap-MB")
		b.ReportMetric(rss, "rss-MB")
	}
}

type txBig struct {
	V []byte `datastore:",noindex"`
}

// memoryInUse returns the heap in use and the resident set, in MB, after
// a GC that returns what it can to the system.
func memoryInUse() (heap, rss float64) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	heap = float64(m.HeapInuse) / 1e6
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := bytes.Fields(b)
		if len(f) > 1 {
			pages, _ := strconv.ParseFloat(string(f[1]), 64)
			rss = pages * float64(os.Getpagesize()) / 1e6
		}
	}
	return heap, rss
}
