//go:build unix

package aelocal

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// loadBenchFile returns the bytes of a datastore file that the API wrote
// while n entities were put by PutMulti of 500, as dsbench loads them (a
// snapshot of a compaction and the log behind it), and of the same
// datastore saved as one snapshot. The files are kept in dir
// ($AELOCAL_LOADBENCH_DIR, else a temporary directory) for the next run.
func loadBenchFile(b *testing.B, n int) (journal, snapshot []byte) {
	dir := os.Getenv("AELOCAL_LOADBENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("ds-%d", n))
	snapPath := path + ".snapshot"
	journal, err1 := os.ReadFile(path)
	snapshot, err2 := os.ReadFile(snapPath)
	if err1 == nil && err2 == nil {
		return journal, snapshot
	}
	os.Remove(path)
	s := newFileServer(b, path)
	ctx := middlewareContext(b, s)
	for lo := 0; lo < n; lo += 500 {
		var keys []*datastore.Key
		var rows []dsbenchRow
		for i := lo; i < min(n, lo+500); i++ {
			keys = append(keys, datastore.NewKey(ctx, "Row", "", int64(i+1), nil))
			rows = append(rows, newDsbenchRow(i, n))
		}
		if _, err := datastore.PutMulti(ctx, keys, rows); err != nil {
			b.Fatal(err)
		}
	}
	snapshot = saved(b, s)
	s.Close()
	if err := os.WriteFile(snapPath, snapshot, 0o600); err != nil {
		b.Fatal(err)
	}
	journal, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return journal, snapshot
}

// BenchmarkReadImage measures a restart's read of the datastore file (from
// memory: no disk), with the indexes built, for the file as the API left
// it and for the same datastore as one snapshot. It reports the file's
// shape: the bytes of its snapshot part and of its log.
//
//	go test -run '^$' -bench BenchmarkReadImage -benchtime 3x ./aelocal
//
// AELOCAL_LOADBENCH_N sets the entities (default 200000).
func BenchmarkReadImage(b *testing.B) {
	n := 200000
	if s := os.Getenv("AELOCAL_LOADBENCH_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	journal, snapshot := loadBenchFile(b, n)
	for _, c := range []struct {
		name string
		file []byte
	}{{"api", journal}, {"snapshot", snapshot}} {
		b.Run(fmt.Sprintf("file=%s/n=%d", c.name, n), func(b *testing.B) {
			var info loadInfo
			var im *dsImage
			cpu0 := cpuTime()
			for range b.N {
				var err error
				im = nil
				im, info, err = readImage(bufio.NewReaderSize(bytes.NewReader(c.file), 256<<10))
				if err != nil {
					b.Fatal(err)
				}
			}
			// What the loaded datastore holds, and the heap the load took
			// from the system (about what a restarted server's RSS shows).
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/float64(n), "live-B/entity")
			b.ReportMetric(float64(ms.HeapSys)/float64(n), "heapsys-B/entity")
			runtime.KeepAlive(im)
			// The machine may be shared: CPU time says more than the
			// wall clock there.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(info.snapEnd), "snapshot-bytes")
			b.ReportMetric(float64(int64(len(c.file))-info.snapEnd), "log-bytes")
		})
	}
}

// loadBenchDatastore returns a datastore holding the snapshot of
// loadBenchFile.
func loadBenchDatastore(b *testing.B, n int) *datastoreService {
	_, snapshot := loadBenchFile(b, n)
	im, _, err := readImage(bufio.NewReaderSize(bytes.NewReader(snapshot), 256<<10))
	if err != nil {
		b.Fatal(err)
	}
	d := newDatastoreService(time.Now)
	d.spaces = im.spaces
	return d
}

// BenchmarkKindStore measures, at 200,000 entities of a kind, a lookup of
// 100 keys by key (what Get of 100 keys does under the lock) and the
// replacement of an entity by a new version of itself (what a Put does
// under the lock, its indexes kept), with their allocations.
//
//	go test -run '^$' -bench BenchmarkKindStore -benchmem ./aelocal
func BenchmarkKindStore(b *testing.B) {
	const n = 200000
	d := loadBenchDatastore(b, n)
	var sp nsKey
	for k := range d.spaces {
		sp = k
	}
	paths := make([]dsPath, 100)
	for i := range paths {
		paths[i] = dsPath{{kind: "Row", id: int64(i*1999%n + 1)}}
	}
	b.Run("get100", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for range b.N {
			d.mu.Lock()
			for _, p := range paths {
				if d.lookupLocked(sp, p) == nil {
					b.Fatal("not found")
				}
			}
			d.mu.Unlock()
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("replace", func(b *testing.B) {
		d.mu.Lock()
		olds := make([]*dsEntity, len(paths))
		for i, p := range paths {
			olds[i] = d.lookupLocked(sp, p)
		}
		d.mu.Unlock()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := range b.N {
			e := *olds[i%len(olds)]
			d.mu.Lock()
			d.writeLocked(sp, e.path, &e)
			d.mu.Unlock()
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}
