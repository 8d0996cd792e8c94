package aelocal

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// BenchmarkPlannedQueries measures each planned query shape of
// TestQueryCostFollowsRows, limit 20, through the real appengine/v2 client
// in process, at 2,000 and 200,000 rows (each loaded once, straight into
// the datastore): the latency of a query, and the index entries it reads
// and the entities it loads (exact counters, per query):
//
//	go test -run '^$' -bench PlannedQueries -benchtime 200x ./aelocal
//
// BENCH_PLAN_SIZES (default "2000,200000") sets the sizes.
func BenchmarkPlannedQueries(b *testing.B) {
	sizes := "2000,200000"
	if s := os.Getenv("BENCH_PLAN_SIZES"); s != "" {
		sizes = s
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("n="+f, func(b *testing.B) {
			s, ctx, shapes := scaleSetup(b, n)
			d := s.datastore
			for _, sh := range shapes {
				q := sh.q.Limit(20)
				run := func() {
					for it := q.Run(ctx); ; {
						var pl datastore.PropertyList
						dst := any(&pl)
						if strings.Contains(sh.name, "keys-only") {
							dst = nil
						}
						if _, err := it.Next(dst); err == datastore.Done {
							break
						} else if err != nil {
							b.Fatal(err)
						}
					}
				}
				run() // builds a composite index the shape needs
				b.Run(strings.ReplaceAll(sh.name, " ", "_"), func(b *testing.B) {
					d.mu.Lock()
					before := d.stats
					d.mu.Unlock()
					for range b.N {
						run()
					}
					d.mu.Lock()
					after := d.stats
					d.mu.Unlock()
					b.ReportMetric(float64(after.entries-before.entries)/float64(b.N), "entries/op")
					b.ReportMetric(float64(after.loaded-before.loaded)/float64(b.N), "loaded/op")
				})
			}
		})
	}
}
