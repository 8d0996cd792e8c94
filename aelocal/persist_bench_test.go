package aelocal

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// benchSession is an entity the size of a stored session.
type benchSession struct {
	Val []byte    `datastore:"val,noindex"`
	Exp time.Time `datastore:"exp"`
}

// BenchmarkPut measures datastore puts through the real appengine/v2
// client over the HTTP bridge, by 1 and by 16 concurrent clients, with the
// datastore in memory and kept in a file (every put synced before it is
// answered). Each put stores a new entity of about 300 bytes.
//
//	go test -run '^$' -bench BenchmarkPut -benchtime 3s -count 5 ./aelocal
func BenchmarkPut(b *testing.B) {
	for _, store := range []string{"memory", "file"} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", store, clients), func(b *testing.B) {
				var s *Server
				if store == "file" {
					s = newFileServer(b, filepath.Join(b.TempDir(), "ds.db"))
				} else {
					s = newTestServer(b)
				}
				ctx := bridgeContext(b, s)
				val := make([]byte, 250)
				var next atomic.Int64
				var failed atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							k := datastore.NewKey(ctx, "Bench", "", i, nil)
							if _, err := datastore.Put(ctx, k, &benchSession{Val: val, Exp: time.Unix(i, 0)}); err != nil {
								failed.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if failed.Load() > 0 {
					b.Fatalf("%d puts failed", failed.Load())
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
				if j := s.datastore.journal; j != nil {
					j.mu.Lock()
					syncs, took := j.syncs, j.syncTime
					j.mu.Unlock()
					b.ReportMetric(float64(b.N)/float64(max(syncs, 1)), "puts/fsync")
					b.ReportMetric(float64(took.Microseconds())/float64(max(syncs, 1)), "µs/fsync")
				}
			})
		}
	}
}
