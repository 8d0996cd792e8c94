package cloud

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/redis/go-redis/v9"
	"google.golang.org/appengine/v2"
)

// The Redis tier's answers are checked against a real redis-server and
// against miniredis (the embedded server of the demo), with the same
// cases, to show that both answer alike.

func TestRedisTierRealServer(t *testing.T) {
	testRedisTier(t, redistest.Start(t))
}

func TestRedisTierMiniredis(t *testing.T) {
	testRedisTier(t, miniredis.RunT(t).Addr())
}

// newClient is a go-redis client of addr, closed when the test ends.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// Values with every byte, and the core's markers: a tier keeps them
// exactly.
var (
	allBytes = func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()
	tombstone   = []byte("\xffgaesession:removed")
	placeholder = []byte("\xffgaesession:datastore-only")
)

func testRedisTier(t *testing.T, addr string) {
	ctx := context.Background()
	rdb := newClient(t, addr)
	rc := newRedisCache(rdb)
	const key = "gaesession:s1"

	mustRead := func(t *testing.T, key string, want []byte, wantFlags uint32) tier.CacheRead {
		t.Helper()
		r, err := rc.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !bytes.Equal(r.Value, want) || r.Flags != wantFlags || !r.Held() {
			t.Fatalf("get %s = %q flags %d held %v; want %q flags %d", key, r.Value, r.Flags, r.Held(), want, wantFlags)
		}
		return r
	}
	is := func(t *testing.T, what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	w := func(v []byte, flags uint32, tok tier.CacheRead) tier.CacheWrite {
		return tier.CacheWrite{Key: key, Value: v, Flags: flags, TTL: time.Hour, Token: tok.Token}
	}

	t.Run("conditional writes", func(t *testing.T) {
		rdb.Del(ctx, key)
		_, err := rc.Get(ctx, key)
		is(t, "get of nothing", err, tier.ErrCacheMiss)

		is(t, "add", rc.Add(ctx, w(placeholder, 7, tier.CacheRead{})), nil)
		first := mustRead(t, key, placeholder, 7)
		is(t, "add again", rc.Add(ctx, w(allBytes, 8, tier.CacheRead{})), tier.ErrNotStored)
		mustRead(t, key, placeholder, 7)

		is(t, "cas over the read", rc.CompareAndSwap(ctx, w(allBytes, 8, first)), nil)
		second := mustRead(t, key, allBytes, 8)
		if second.Token == first.Token {
			t.Fatal("a write kept the token")
		}
		is(t, "cas over an old read", rc.CompareAndSwap(ctx, w([]byte("late"), 9, first)), tier.ErrCASConflict)
		mustRead(t, key, allBytes, 8)

		// A logout: the tombstone's set makes every compare-and-swap over
		// an earlier read fail.
		is(t, "set of the tombstone", rc.Set(ctx, w(tombstone, 10, tier.CacheRead{})), nil)
		tomb := mustRead(t, key, tombstone, 10)
		is(t, "cas after the tombstone", rc.CompareAndSwap(ctx, w(allBytes, 8, second)), tier.ErrCASConflict)
		mustRead(t, key, tombstone, 10)

		// The tombstone is evicted; a placeholder comes after it. A token
		// read before the eviction must not match it (no ABA).
		rdb.Del(ctx, key)
		is(t, "cas after the eviction", rc.CompareAndSwap(ctx, w(allBytes, 8, tomb)), tier.ErrNotStored)
		is(t, "add after the eviction", rc.Add(ctx, w(placeholder, 11, tier.CacheRead{})), nil)
		is(t, "cas with the token from before the eviction", rc.CompareAndSwap(ctx, w(allBytes, 8, tomb)), tier.ErrCASConflict)
		is(t, "cas with an older token", rc.CompareAndSwap(ctx, w(allBytes, 8, first)), tier.ErrCASConflict)
		mustRead(t, key, placeholder, 11)
	})

	t.Run("bytes and flags", func(t *testing.T) {
		for _, v := range [][]byte{allBytes, tombstone, placeholder, {0}, {0xff}, {}} {
			for _, flags := range []uint32{0, 1, 1<<31 + 5, 1<<32 - 1} {
				is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: v, Flags: flags, TTL: time.Minute}), nil)
				mustRead(t, key, v, flags)
			}
		}
	})

	t.Run("TTL", func(t *testing.T) {
		pttl := func(t *testing.T) time.Duration {
			t.Helper()
			d, err := rdb.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: allBytes, TTL: 90 * time.Second}), nil)
		if d := pttl(t); d <= 0 || d > 90*time.Second {
			t.Fatalf("PTTL after a 90 s set = %v", d)
		}
		// Over 30 days: capped at Memcache's limit, as the core caps it.
		is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: allBytes, TTL: 45 * 24 * time.Hour}), nil)
		if d := pttl(t); d <= maxCacheTTL-time.Hour || d > maxCacheTTL {
			t.Fatalf("PTTL after a 45-day set = %v, want the 30-day cap", d)
		}
		// No expiration: the write also removes the TTL the key had.
		is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: allBytes}), nil)
		if d := pttl(t); d != -1 {
			t.Fatalf("PTTL after a set without expiration = %v, want -1 (none)", d)
		}
		// A compare-and-swap sets its own TTL.
		r := mustRead(t, key, allBytes, 0)
		is(t, "cas", rc.CompareAndSwap(ctx, tier.CacheWrite{Key: key, Value: tombstone, TTL: time.Minute, Token: r.Token}), nil)
		if d := pttl(t); d <= 0 || d > time.Minute {
			t.Fatalf("PTTL after a one-minute cas = %v", d)
		}
	})

	t.Run("batches", func(t *testing.T) {
		keys := []string{"b:1", "b:2", "b:3"}
		rdb.Del(ctx, keys...)
		ws := func(v string, toks ...tier.CacheRead) []tier.CacheWrite {
			out := make([]tier.CacheWrite, len(keys))
			for i, k := range keys {
				out[i] = tier.CacheWrite{Key: k, Value: []byte(v + k), Flags: uint32(i), TTL: time.Hour}
				if i < len(toks) {
					out[i].Token = toks[i].Token
				}
			}
			return out
		}
		is(t, "add b:2", rc.Add(ctx, ws("x")[1]), nil)
		err := rc.AddMulti(ctx, ws("a"))
		wantMulti(t, err, nil, tier.ErrNotStored, nil)

		reads := make([]tier.CacheRead, 4)
		into := []*tier.CacheRead{&reads[0], &reads[1], &reads[2], &reads[3]}
		if err := rc.GetMulti(ctx, []string{"b:1", "b:none", "b:2", "b:3"}, into); err != nil {
			t.Fatal(err)
		}
		if reads[1].Held() || string(reads[0].Value) != "ab:1" || string(reads[2].Value) != "xb:2" || string(reads[3].Value) != "ab:3" || reads[3].Flags != 2 {
			t.Fatalf("getMulti = %+v", reads)
		}
		// b:1 over its read, b:2 over a stale token, b:3 evicted.
		stale := mustRead(t, "b:2", []byte("xb:2"), 1)
		is(t, "set b:2", rc.Set(ctx, ws("y")[1]), nil)
		rdb.Del(ctx, "b:3")
		err = rc.CompareAndSwapMulti(ctx, ws("c", reads[0], stale, reads[3]))
		wantMulti(t, err, nil, tier.ErrCASConflict, tier.ErrNotStored)
		mustRead(t, "b:1", []byte("cb:1"), 0)
		mustRead(t, "b:2", []byte("yb:2"), 1)

		is(t, "setMulti", rc.SetMulti(ctx, ws("s")), nil)
		for i, k := range keys {
			mustRead(t, k, []byte("s"+k), uint32(i))
		}
		is(t, "empty batch", rc.SetMulti(ctx, nil), nil)
	})

	t.Run("script lost", func(t *testing.T) {
		// After a restart or SCRIPT FLUSH the server no longer has the
		// script: a write falls back to EVAL, a batch goes again as EVALs.
		rdb.ScriptFlush(ctx)
		is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: []byte("1"), TTL: time.Hour}), nil)
		rdb.ScriptFlush(ctx)
		is(t, "setMulti", rc.SetMulti(ctx, []tier.CacheWrite{{Key: key, Value: []byte("2"), TTL: time.Hour}, {Key: "b:1", Value: []byte("3")}}), nil)
		mustRead(t, key, []byte("2"), 0)
		mustRead(t, "b:1", []byte("3"), 0)
	})

	t.Run("foreign values", func(t *testing.T) {
		// A key another program wrote: not a hash of this tier. Reading it
		// is an error, not a panic; a compare-and-swap over a read of ours
		// fails; a set replaces it.
		r := mustRead(t, key, []byte("2"), 0)
		rdb.Set(ctx, key, "other", 0)
		if _, err := rc.Get(ctx, key); err == nil || errors.Is(err, tier.ErrCacheMiss) {
			t.Fatalf("get of a string key: %v", err)
		}
		is(t, "cas over a string key", rc.CompareAndSwap(ctx, tier.CacheWrite{Key: key, Value: []byte("x"), Token: r.Token}), tier.ErrCASConflict)
		rdb.Del(ctx, key)
		rdb.HSet(ctx, key, "v", "no token")
		_, err := rc.Get(ctx, key)
		is(t, "get of a hash without a token", err, tier.ErrCacheMiss)
		is(t, "set", rc.Set(ctx, tier.CacheWrite{Key: key, Value: []byte("mine")}), nil)
		mustRead(t, key, []byte("mine"), 0)
		if n, _ := rdb.HLen(ctx, key).Result(); n != 3 {
			t.Fatalf("the set left %d fields, want v, f, n", n)
		}
		if err := rc.CompareAndSwap(ctx, tier.CacheWrite{Key: key, Value: []byte("x"), Token: "memcache item"}); err == nil {
			t.Fatal("cas over another tier's token succeeded")
		}
		mustRead(t, key, []byte("mine"), 0)
	})
}

func wantMulti(t *testing.T, err error, want ...error) {
	t.Helper()
	var me appengine.MultiError
	if !errors.As(err, &me) || len(me) != len(want) {
		t.Fatalf("error %v, want a MultiError of %v", err, want)
	}
	for i := range want {
		if !errors.Is(me[i], want[i]) || (want[i] == nil) != (me[i] == nil) {
			t.Fatalf("item %d: %v, want %v (all: %v)", i, me[i], want[i], me)
		}
	}
}

// TestRedisTierTimeout: a call whose answer does not come before the
// client's read deadline returns an error the store recognises with
// appengine.IsTimeoutError, and so does not retry. The network stalls in
// a proxy in front of a real server.
func TestRedisTierTimeout(t *testing.T) {
	for name, addr := range map[string]func(t *testing.T) string{
		"redis-server": func(t *testing.T) string { return redistest.Start(t) },
		"miniredis":    func(t *testing.T) string { return miniredis.RunT(t).Addr() },
	} {
		t.Run(name, func(t *testing.T) {
			proxy := redistest.NewProxy(t, addr(t))
			rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
			t.Cleanup(func() { rdb.Close() })
			rc := newRedisCache(rdb)
			ctx := context.Background()
			if err := rc.Set(ctx, tier.CacheWrite{Key: "k", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			proxy.Stall()
			defer proxy.Resume()
			calls := map[string]func() error{
				"get": func() error { _, err := rc.Get(ctx, "k"); return err },
				"cas": func() error { return rc.CompareAndSwap(ctx, tier.CacheWrite{Key: "k", Token: redisToken("t")}) },
				"getMulti": func() error {
					var r tier.CacheRead
					return rc.GetMulti(ctx, []string{"k"}, []*tier.CacheRead{&r})
				},
				"setMulti": func() error { return rc.SetMulti(ctx, []tier.CacheWrite{{Key: "k"}, {Key: "l"}}) },
			}
			for what, call := range calls {
				err := call()
				if err == nil || !appengine.IsTimeoutError(err) {
					t.Errorf("%s through a stalled network: %v (%T), want a timeout", what, err, err)
				}
			}
		})
	}
}
