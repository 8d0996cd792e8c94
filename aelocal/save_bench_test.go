package aelocal_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// This file uses the exported API only, so that the same benchmark runs
// against earlier versions of aelocal.

type blob struct {
	V []byte `datastore:",noindex"`
}

// largeServer returns a server holding AELOCAL_BENCH_MB megabytes (default
// 32) of entities of 10 KB each.
func largeServer(b *testing.B) *aelocal.Server {
	mb := 32
	if v, err := strconv.Atoi(os.Getenv("AELOCAL_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	s, err := aelocal.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
	const size = 10 << 10
	n := mb << 20 / size
	keys := make([]*datastore.Key, 0, 500)
	vals := make([]blob, 0, 500)
	for i := 0; i < n; i++ {
		v := make([]byte, size)
		copy(v, strconv.Itoa(i))
		keys = append(keys, datastore.NewKey(ctx, "Large", "", int64(i+1), nil))
		vals = append(vals, blob{v})
		if len(keys) == cap(keys) || i == n-1 {
			if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
				b.Fatal(err)
			}
			keys, vals = keys[:0], vals[:0]
		}
	}
	return s
}

// peakHeap samples the heap in use while f runs and returns how far it
// rose above where it started.
func peakHeap(f func()) uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	base, peak := m.HeapInuse, m.HeapInuse
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak - base
}

// BenchmarkLargeDatastore saves a large datastore to a file and loads it
// back, reporting the time and how far the heap rose.
//
//	AELOCAL_BENCH_MB=500 go test -run '^$' -bench BenchmarkLargeDatastore -benchtime 1x -count 3 ./aelocal
func BenchmarkLargeDatastore(b *testing.B) {
	s := largeServer(b)
	path := filepath.Join(b.TempDir(), "ds")
	b.Run("save", func(b *testing.B) {
		b.ReportAllocs()
		var peak uint64
		for i := 0; i < b.N; i++ {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			peak = max(peak, peakHeap(func() {
				if err := s.SaveDatastore(f); err != nil {
					b.Fatal(err)
				}
			}))
			f.Close()
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		if st, err := os.Stat(path); err == nil {
			b.ReportMetric(float64(st.Size())/(1<<20), "file-MB")
		}
	})
	b.Run("load", func(b *testing.B) {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s2, err := aelocal.NewServer()
			if err != nil {
				b.Fatal(err)
			}
			if err := s2.LoadDatastore(bytes.NewReader(data)); err != nil {
				b.Fatal(fmt.Errorf("load: %w", err))
			}
			s2.Close()
		}
	})
	// Opening the file as a server's DatastorePath: the time before it
	// answers.
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s2, err := aelocal.NewServerOptions(&aelocal.Options{DatastorePath: path})
			if err != nil {
				b.Fatal(err)
			}
			s2.Close()
		}
	})
}
