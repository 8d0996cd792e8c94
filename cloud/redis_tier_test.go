package cloud

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
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
	tier := NewRedisCache(rdb)
	const key = "gaesession:s1"

	mustRead := func(t *testing.T, key string, want []byte, wantFlags uint32) cacheRead {
		t.Helper()
		r, err := tier.get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !bytes.Equal(r.value, want) || r.flags != wantFlags || !r.held() {
			t.Fatalf("get %s = %q flags %d held %v; want %q flags %d", key, r.value, r.flags, r.held(), want, wantFlags)
		}
		return r
	}
	is := func(t *testing.T, what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	w := func(v []byte, flags uint32, tok cacheRead) cacheWrite {
		return cacheWrite{key: key, value: v, flags: flags, ttl: time.Hour, token: tok.token}
	}

	t.Run("conditional writes", func(t *testing.T) {
		rdb.Del(ctx, key)
		_, err := tier.get(ctx, key)
		is(t, "get of nothing", err, errCacheMiss)

		is(t, "add", tier.add(ctx, w(placeholder, 7, cacheRead{})), nil)
		first := mustRead(t, key, placeholder, 7)
		is(t, "add again", tier.add(ctx, w(allBytes, 8, cacheRead{})), errNotStored)
		mustRead(t, key, placeholder, 7)

		is(t, "cas over the read", tier.compareAndSwap(ctx, w(allBytes, 8, first)), nil)
		second := mustRead(t, key, allBytes, 8)
		if second.token == first.token {
			t.Fatal("a write kept the token")
		}
		is(t, "cas over an old read", tier.compareAndSwap(ctx, w([]byte("late"), 9, first)), errCASConflict)
		mustRead(t, key, allBytes, 8)

		// A logout: the tombstone's set makes every compare-and-swap over
		// an earlier read fail.
		is(t, "set of the tombstone", tier.set(ctx, w(tombstone, 10, cacheRead{})), nil)
		tomb := mustRead(t, key, tombstone, 10)
		is(t, "cas after the tombstone", tier.compareAndSwap(ctx, w(allBytes, 8, second)), errCASConflict)
		mustRead(t, key, tombstone, 10)

		// The tombstone is evicted; a placeholder comes after it. A token
		// read before the eviction must not match it (no ABA).
		rdb.Del(ctx, key)
		is(t, "cas after the eviction", tier.compareAndSwap(ctx, w(allBytes, 8, tomb)), errNotStored)
		is(t, "add after the eviction", tier.add(ctx, w(placeholder, 11, cacheRead{})), nil)
		is(t, "cas with the token from before the eviction", tier.compareAndSwap(ctx, w(allBytes, 8, tomb)), errCASConflict)
		is(t, "cas with an older token", tier.compareAndSwap(ctx, w(allBytes, 8, first)), errCASConflict)
		mustRead(t, key, placeholder, 11)
	})

	t.Run("bytes and flags", func(t *testing.T) {
		for _, v := range [][]byte{allBytes, tombstone, placeholder, {0}, {0xff}, {}} {
			for _, flags := range []uint32{0, 1, 1<<31 + 5, 1<<32 - 1} {
				is(t, "set", tier.set(ctx, cacheWrite{key: key, value: v, flags: flags, ttl: time.Minute}), nil)
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
		is(t, "set", tier.set(ctx, cacheWrite{key: key, value: allBytes, ttl: 90 * time.Second}), nil)
		if d := pttl(t); d <= 0 || d > 90*time.Second {
			t.Fatalf("PTTL after a 90 s set = %v", d)
		}
		// Over 30 days: capped at Memcache's limit, as the core caps it.
		is(t, "set", tier.set(ctx, cacheWrite{key: key, value: allBytes, ttl: 45 * 24 * time.Hour}), nil)
		if d := pttl(t); d <= maxCacheTTL-time.Hour || d > maxCacheTTL {
			t.Fatalf("PTTL after a 45-day set = %v, want the 30-day cap", d)
		}
		// No expiration: the write also removes the TTL the key had.
		is(t, "set", tier.set(ctx, cacheWrite{key: key, value: allBytes}), nil)
		if d := pttl(t); d != -1 {
			t.Fatalf("PTTL after a set without expiration = %v, want -1 (none)", d)
		}
		// A compare-and-swap sets its own TTL.
		r := mustRead(t, key, allBytes, 0)
		is(t, "cas", tier.compareAndSwap(ctx, cacheWrite{key: key, value: tombstone, ttl: time.Minute, token: r.token}), nil)
		if d := pttl(t); d <= 0 || d > time.Minute {
			t.Fatalf("PTTL after a one-minute cas = %v", d)
		}
	})

	t.Run("batches", func(t *testing.T) {
		keys := []string{"b:1", "b:2", "b:3"}
		rdb.Del(ctx, keys...)
		ws := func(v string, toks ...cacheRead) []cacheWrite {
			out := make([]cacheWrite, len(keys))
			for i, k := range keys {
				out[i] = cacheWrite{key: k, value: []byte(v + k), flags: uint32(i), ttl: time.Hour}
				if i < len(toks) {
					out[i].token = toks[i].token
				}
			}
			return out
		}
		is(t, "add b:2", tier.add(ctx, ws("x")[1]), nil)
		err := tier.addMulti(ctx, ws("a"))
		wantMulti(t, err, nil, errNotStored, nil)

		reads := make([]cacheRead, 4)
		into := []*cacheRead{&reads[0], &reads[1], &reads[2], &reads[3]}
		if err := tier.getMulti(ctx, []string{"b:1", "b:none", "b:2", "b:3"}, into); err != nil {
			t.Fatal(err)
		}
		if reads[1].held() || string(reads[0].value) != "ab:1" || string(reads[2].value) != "xb:2" || string(reads[3].value) != "ab:3" || reads[3].flags != 2 {
			t.Fatalf("getMulti = %+v", reads)
		}
		// b:1 over its read, b:2 over a stale token, b:3 evicted.
		stale := mustRead(t, "b:2", []byte("xb:2"), 1)
		is(t, "set b:2", tier.set(ctx, ws("y")[1]), nil)
		rdb.Del(ctx, "b:3")
		err = tier.compareAndSwapMulti(ctx, ws("c", reads[0], stale, reads[3]))
		wantMulti(t, err, nil, errCASConflict, errNotStored)
		mustRead(t, "b:1", []byte("cb:1"), 0)
		mustRead(t, "b:2", []byte("yb:2"), 1)

		is(t, "setMulti", tier.setMulti(ctx, ws("s")), nil)
		for i, k := range keys {
			mustRead(t, k, []byte("s"+k), uint32(i))
		}
		is(t, "empty batch", tier.setMulti(ctx, nil), nil)
	})

	t.Run("script lost", func(t *testing.T) {
		// After a restart or SCRIPT FLUSH the server no longer has the
		// script: a write falls back to EVAL, a batch goes again as EVALs.
		rdb.ScriptFlush(ctx)
		is(t, "set", tier.set(ctx, cacheWrite{key: key, value: []byte("1"), ttl: time.Hour}), nil)
		rdb.ScriptFlush(ctx)
		is(t, "setMulti", tier.setMulti(ctx, []cacheWrite{{key: key, value: []byte("2"), ttl: time.Hour}, {key: "b:1", value: []byte("3")}}), nil)
		mustRead(t, key, []byte("2"), 0)
		mustRead(t, "b:1", []byte("3"), 0)
	})

	t.Run("foreign values", func(t *testing.T) {
		// A key another program wrote: not a hash of this tier. Reading it
		// is an error, not a panic; a compare-and-swap over a read of ours
		// fails; a set replaces it.
		r := mustRead(t, key, []byte("2"), 0)
		rdb.Set(ctx, key, "other", 0)
		if _, err := tier.get(ctx, key); err == nil || errors.Is(err, errCacheMiss) {
			t.Fatalf("get of a string key: %v", err)
		}
		is(t, "cas over a string key", tier.compareAndSwap(ctx, cacheWrite{key: key, value: []byte("x"), token: r.token}), errCASConflict)
		rdb.Del(ctx, key)
		rdb.HSet(ctx, key, "v", "no token")
		_, err := tier.get(ctx, key)
		is(t, "get of a hash without a token", err, errCacheMiss)
		is(t, "set", tier.set(ctx, cacheWrite{key: key, value: []byte("mine")}), nil)
		mustRead(t, key, []byte("mine"), 0)
		if n, _ := rdb.HLen(ctx, key).Result(); n != 3 {
			t.Fatalf("the set left %d fields, want v, f, n", n)
		}
		if err := tier.compareAndSwap(ctx, cacheWrite{key: key, value: []byte("x"), token: "memcache item"}); err == nil {
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
			tier := NewRedisCache(rdb)
			ctx := context.Background()
			if err := tier.set(ctx, cacheWrite{key: "k", value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			proxy.Stall()
			defer proxy.Resume()
			calls := map[string]func() error{
				"get": func() error { _, err := tier.get(ctx, "k"); return err },
				"cas": func() error { return tier.compareAndSwap(ctx, cacheWrite{key: "k", token: redisToken("t")}) },
				"getMulti": func() error {
					var r cacheRead
					return tier.getMulti(ctx, []string{"k"}, []*cacheRead{&r})
				},
				"setMulti": func() error { return tier.setMulti(ctx, []cacheWrite{{key: "k"}, {key: "l"}}) },
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
