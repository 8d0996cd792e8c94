package aelocal

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// BenchmarkPutDuringTxQueries measures a Put through the real appengine/v2
// client, in process, alone and while another client runs queries in
// transactions (not ancestor queries: limit-20 queries of the kind, an
// equality and a sort order, each transaction rolled back) over the kind
// of 200,000 rows it writes (scaleRows, loaded straight into the
// datastore). It reports the median Put (put-median-us), the 90th
// percentile and the slowest beside the mean (ns/op), and for the queries in transactions run meanwhile their number
// and the index entries and versions put back each read (exact counters):
//
//	go test -run '^$' -bench PutDuringTxQueries -benchtime 300x ./aelocal
//
// BENCH_TXPUT_N (default 200000) sets the kind's size.
func BenchmarkPutDuringTxQueries(b *testing.B) {
	n := 200000
	if v := os.Getenv("BENCH_TXPUT_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	s, ctx, _ := scaleSetup(b, n)
	d := s.datastore
	queries := []*datastore.Query{
		datastore.NewQuery("Row").Limit(20),
		datastore.NewQuery("Row").Filter("Group =", int64(7)).Limit(20),
		datastore.NewQuery("Row").Order("-Created").Limit(20),
	}
	next := n
	put := func() time.Duration {
		next++
		k := datastore.NewKey(ctx, "Row", "", int64(next), nil)
		pl := datastore.PropertyList{{Name: "Name", Value: "new"}, {Name: "Group", Value: int64(next % 100)},
			{Name: "Team", Value: int64(next % 10)}, {Name: "City", Value: "c1"}, {Name: "Created", Value: scaleBase}}
		began := time.Now()
		if _, err := datastore.Put(ctx, k, &pl); err != nil {
			b.Fatal(err)
		}
		return time.Since(began)
	}
	puts := func(b *testing.B) {
		took := make([]time.Duration, 0, b.N)
		for range b.N {
			took = append(took, put())
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "put-median-us")
		b.ReportMetric(float64(took[len(took)*9/10].Microseconds()), "put-p90-us")
		b.ReportMetric(float64(took[len(took)-1].Microseconds()), "put-max-us")
	}
	b.Run("alone", puts)
	b.Run("during-tx-queries", func(b *testing.B) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ran atomic.Int64
		d.mu.Lock()
		before := d.stats
		d.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
					for _, q := range queries {
						var rows []datastore.PropertyList
						if _, err := q.GetAll(tc, &rows); err != nil {
							return err
						}
						ran.Add(1)
					}
					return errRollback
				}, nil)
				if err != errRollback {
					b.Error(err)
					return
				}
			}
		}()
		for ran.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		b.ResetTimer()
		puts(b)
		b.StopTimer()
		close(stop)
		wg.Wait()
		d.mu.Lock()
		after := d.stats
		d.mu.Unlock()
		q := float64(ran.Load())
		b.ReportMetric(q, "tx-queries")
		b.ReportMetric(float64(after.entries-before.entries)/q, "entries/tx-query")
		b.ReportMetric(float64(after.changes-before.changes)/q, "put-back/tx-query")
	})
}
