package aelocal

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

func TestMemcacheStats(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		stopClock(s) // expiry is checked to the second
		st, err := memcache.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if *st != (memcache.Statistics{}) {
			t.Fatalf("fresh Stats = %+v, want zeros", st)
		}
		mustSet(t, ctx, "key1", "value") // 4 + 5 bytes
		s.FastForward(30 * time.Second)
		nsCtx, _ := appengine.Namespace(ctx, "ns")
		mustSet(t, nsCtx, "k2", "vv") // 2 + 2 bytes
		wantValue(t, nsCtx, "k2", "vv")
		wantValue(t, nsCtx, "k2", "vv")
		wantMiss(t, ctx, "nope")
		memcache.GetMulti(ctx, []string{"a", "b"})
		memcache.Peek(ctx, "key1")  // peeks do not count
		memcache.Peek(ctx, "nope2") // nor touch
		st, err = memcache.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// byte_hits counts the key and the value of each hit: 2 x (2 + 2).
		want := memcache.Statistics{Hits: 2, Misses: 3, ByteHits: 8, Items: 2, Bytes: 13, Oldest: 30}
		if st.Oldest >= 30 && st.Oldest <= 31 {
			want.Oldest = st.Oldest
		}
		if *st != want {
			t.Fatalf("Stats = %+v, want %+v", *st, want)
		}
		// Expired and deleted items leave the counts.
		if err := memcache.Set(ctx, &memcache.Item{Key: "e", Value: []byte("x"), Expiration: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		memcache.Delete(ctx, "key1")
		s.FastForward(10 * time.Second)
		st, _ = memcache.Stats(ctx)
		if st.Items != 1 || st.Bytes != 4 || st.Oldest < 10 || st.Oldest > 11 {
			t.Fatalf("Stats = %+v, want 1 item of 4 bytes, oldest about 10s", *st)
		}
	})
}

func TestMemcacheServerStats(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		mustSet(t, ctx, "a", "1")
		if err := memcache.SetMulti(ctx, []*memcache.Item{{Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}); err != nil {
			t.Fatal(err)
		}
		memcache.Get(ctx, "a")
		memcache.GetMulti(ctx, []string{"a", "b"})
		memcache.Peek(ctx, "a")
		memcache.Delete(ctx, "a")
		memcache.Increment(ctx, "n", 1, 0)
		memcache.Flush(ctx)
		memcache.Stats(ctx)
		got := s.Stats()
		want := map[string]int64{
			"memcache.Set": 2, "memcache.Get": 3, "memcache.Delete": 1,
			"memcache.Increment": 1, "memcache.FlushAll": 1, "memcache.Stats": 1,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("Stats()[%q] = %d, want %d", k, got[k], v)
			}
		}
		s.ResetStats()
		if len(s.Stats()) != 0 {
			t.Fatalf("after ResetStats: %v", s.Stats())
		}
	})
}

// The client maps a missing stats message to ErrNoStats; the server must
// always send one, with every required field.
func TestMemcacheStatsMessageComplete(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	out, err := mcCall(t, ctx, "Stats", "StatsRequest", "StatsResponse", func(pmsg) {})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Has("stats") {
		t.Fatal("no stats in the response")
	}
	st := out.Msg("stats")
	for _, f := range []string{"hits", "misses", "byte_hits", "items", "bytes", "oldest_item_age"} {
		if !st.Has(f) {
			t.Errorf("stats.%s missing", f)
		}
	}
	if _, err := memcache.Stats(ctx); errors.Is(err, memcache.ErrNoStats) {
		t.Fatal(err)
	}
}
