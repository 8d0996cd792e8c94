package aelocal_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// scaleRow is the measured entity of issue 25: ten indexed properties.
type scaleRow struct {
	Name    string
	Group   int64 // i % 100: an equality filter on it matches ~1%
	Created time.Time
	Score   float64
	Active  bool
	Email   string
	City    string
	Count   int64
	Tag     string
	Note    string
}

// BenchmarkQueryScale measures the queries of issue 25's table through the
// real appengine/v2 client, in process, at growing kind sizes: each limit-20
// query should cost the same whatever the kind's size.
//
//	go test -run '^$' -bench QueryScale -benchtime 20x ./aelocal
//
// BENCH_SCALE_MAX (default 100000) caps the sizes run. The log (-v) gives
// the time the load took per entity, which the index upkeep adds to, and
// the Go heap in use per entity after it (the indexes included).
func BenchmarkQueryScale(b *testing.B) {
	maxN := 100000
	if s := os.Getenv("BENCH_SCALE_MAX"); s != "" {
		maxN, _ = strconv.Atoi(s)
	}
	for _, n := range []int{1000, 10000, 100000} {
		if n > maxN {
			break
		}
		heap0, _ := memoryInUse()
		s, err := aelocal.NewServer()
		if err != nil {
			b.Fatal(err)
		}
		ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
		began := time.Now()
		loadScaleRows(b, ctx, n)
		took := time.Since(began)
		heap1, _ := memoryInUse()
		b.Logf("n=%d: loaded in %v, %v per entity (PutMulti of 500); Go heap %.0f bytes per entity",
			n, took.Round(time.Millisecond), took/time.Duration(n), (heap1-heap0)*1e6/float64(n))
		// A cursor at N/2, in key order.
		it := datastore.NewQuery("Row").KeysOnly().Offset(n / 2).Limit(1).Run(ctx)
		if _, err := it.Next(nil); err != nil {
			b.Fatal(err)
		}
		mid, err := it.Cursor()
		if err != nil {
			b.Fatal(err)
		}
		queries := []struct {
			name string
			q    *datastore.Query
		}{
			{"kind", datastore.NewQuery("Row").Limit(20)},
			{"equality", datastore.NewQuery("Row").Filter("Group =", int64(7)).Limit(20)},
			{"order-time", datastore.NewQuery("Row").Order("-Created").Limit(20)},
			{"after-cursor", datastore.NewQuery("Row").Start(mid).Limit(20)},
			// Two sort orders: the first order's index, its ties sorted.
			{"order-two", datastore.NewQuery("Row").Order("City").Order("-Created").Limit(20)},
		}
		for _, c := range queries {
			want := 20
			if c.name == "equality" {
				want = min(20, n/100)
			}
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				for range b.N {
					var rows []scaleRow
					if _, err := c.q.GetAll(ctx, &rows); err != nil {
						b.Fatal(err)
					}
					if len(rows) != want {
						b.Fatalf("got %d rows, want %d", len(rows), want)
					}
				}
			})
		}
		// Count reads the kind index in batches of 1,000 skipped keys
		// (the client's offset walk): time follows the kind.
		b.Run(fmt.Sprintf("count/n=%d", n), func(b *testing.B) {
			for range b.N {
				got, err := datastore.NewQuery("Row").Count(ctx)
				if err != nil || got != n {
					b.Fatalf("Count = %d, %v; want %d", got, err, n)
				}
			}
		})
		s.Close()
	}
}

// loadScaleRows puts n scaleRows with IDs 1..n, in batches of 500.
func loadScaleRows(b *testing.B, ctx context.Context, n int) {
	b.Helper()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for lo := 0; lo < n; lo += 500 {
		hi := min(lo+500, n)
		keys := make([]*datastore.Key, 0, hi-lo)
		rows := make([]scaleRow, 0, hi-lo)
		for i := lo; i < hi; i++ {
			keys = append(keys, datastore.NewKey(ctx, "Row", "", int64(i+1), nil))
			rows = append(rows, scaleRow{
				Name:    "name-" + strconv.Itoa(i),
				Group:   int64(i % 100),
				Created: base.Add(time.Duration(i*7919%n) * time.Second),
				Score:   float64(i%1000) / 7,
				Active:  i%2 == 0,
				Email:   "user" + strconv.Itoa(i) + "@example.com",
				City:    "city-" + strconv.Itoa(i%50),
				Count:   int64(i),
				Tag:     "tag-" + strconv.Itoa(i%10),
				Note:    "a short note about row " + strconv.Itoa(i),
			})
		}
		if _, err := datastore.PutMulti(ctx, keys, rows); err != nil {
			b.Fatal(err)
		}
	}
}
