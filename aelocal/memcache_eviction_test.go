package aelocal

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

func TestMemcacheLimits(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k250, k251 := strings.Repeat("k", 250), strings.Repeat("k", 251)
		mustSet(t, ctx, k250, "ok")
		wantValue(t, ctx, k250, "ok")
		keyErr := []string{"251 bytes", "250-byte limit"}

		wantInvalid(t, memcache.Set(ctx, &memcache.Item{Key: k251, Value: []byte("x")}), keyErr...)
		_, err := memcache.Get(ctx, k251)
		wantInvalid(t, err, keyErr...)
		_, err = memcache.GetMulti(ctx, []string{"a", k251})
		wantInvalid(t, err, keyErr...)
		_, err = memcache.Peek(ctx, k251)
		wantInvalid(t, err, keyErr...)
		wantInvalid(t, memcache.Add(ctx, &memcache.Item{Key: k251, Value: []byte("x")}), keyErr...)
		wantInvalid(t, memcache.Delete(ctx, k251), keyErr...)
		wantInvalid(t, memcache.DeleteMulti(ctx, []string{k250, k251}), keyErr...)
		wantValue(t, ctx, k250, "ok") // the failed DeleteMulti deleted nothing
		_, err = memcache.Increment(ctx, k251, 1, 0)
		wantInvalid(t, err, keyErr...)

		// Production stores an item while key, value and 73 bytes of
		// overhead fit in 1 MiB.
		for _, c := range []struct {
			key   string
			value int
			fits  bool
		}{
			{k250, 1048253, true},
			{k250, 1048254, false},
			{"k", 1048502, true},
			{"k", 1048503, false},
			{"", 1048503, true},
		} {
			big := bytes.Repeat([]byte("v"), c.value)
			err := memcache.Set(ctx, &memcache.Item{Key: c.key, Value: big})
			if !c.fits {
				if err != memcache.ErrServerError {
					t.Fatalf("Set of a %d-byte key and a %d-byte value: %v, want ErrServerError", len(c.key), c.value, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Set of a %d-byte key and a %d-byte value: %v", len(c.key), c.value, err)
			}
			it, err := memcache.Get(ctx, c.key)
			if err != nil || !bytes.Equal(it.Value, big) {
				t.Fatalf("Get of the %d-byte value: %v", c.value, err)
			}
		}
		// A refused Set leaves the stored value as it was.
		it, _ := memcache.Get(ctx, "k")
		if it == nil || len(it.Value) != 1048502 {
			t.Fatal("a refused Set changed the stored value")
		}

		// A batch with one item too big fails that item only.
		tooBig := make([]byte, 1<<20)
		err = memcache.SetMulti(ctx, []*memcache.Item{{Key: "fine", Value: []byte("x")}, {Key: "huge", Value: tooBig}, {Key: "fine2", Value: []byte("y")}})
		me, ok := err.(appengine.MultiError)
		if !ok || len(me) != 3 || me[0] != nil || me[1] != memcache.ErrServerError || me[2] != nil {
			t.Fatalf("SetMulti with one item too big: %v, want MultiError{nil, ErrServerError, nil}", err)
		}
		wantValue(t, ctx, "fine", "x")
		wantValue(t, ctx, "fine2", "y")
		wantMiss(t, ctx, "huge")
		for _, add := range []func(context.Context, *memcache.Item) error{memcache.Add, memcache.CompareAndSwap} {
			if err := add(ctx, &memcache.Item{Key: "huge", Value: tooBig}); err != memcache.ErrServerError {
				t.Fatalf("Add/CAS of an item too big: %v, want ErrServerError", err)
			}
		}
	})
}

func TestMemcacheExpiry(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		stopClock(s) // expiry is checked to the second
		// Relative.
		if err := memcache.Set(ctx, &memcache.Item{Key: "rel", Value: []byte("v"), Expiration: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		// Never.
		mustSet(t, ctx, "never", "v")
		// Absolute, as the client sends for 30 years or more.
		if err := memcache.Set(ctx, &memcache.Item{Key: "abs", Value: []byte("v"), Expiration: 31 * 365 * 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		// Absolute, in a minute, sent raw.
		_, err := mcCall(t, ctx, "Set", "SetRequest", "SetResponse", func(in pmsg) {
			it := in.AppendMsg("item")
			it.Set("key", "abs60")
			it.Set("value", "v")
			it.Set("expiration_time", uint32(s.Now().Unix()+60))
		})
		if err != nil {
			t.Fatal(err)
		}
		s.FastForward(9 * time.Second)
		wantValue(t, ctx, "rel", "v")
		s.FastForward(2 * time.Second)
		wantMiss(t, ctx, "rel")
		if err := memcache.Add(ctx, &memcache.Item{Key: "rel", Value: []byte("again")}); err != nil {
			t.Fatalf("Add over an expired item: %v", err)
		}
		wantValue(t, ctx, "abs60", "v")
		s.FastForward(50 * time.Second)
		wantMiss(t, ctx, "abs60")

		s.FastForward(30 * 365 * 24 * time.Hour)
		wantValue(t, ctx, "abs", "v")
		s.FastForward(2 * 365 * 24 * time.Hour)
		wantMiss(t, ctx, "abs")
		wantValue(t, ctx, "never", "v")

		// An expiry already past: Set reports success, the item is not
		// kept, and the value it replaced is gone.
		mustSet(t, ctx, "past", "old")
		if err := memcache.Set(ctx, &memcache.Item{Key: "past", Value: []byte("new"), Expiration: time.Millisecond}); err != nil {
			t.Fatalf("Set with an expiry in the past: %v", err)
		}
		wantMiss(t, ctx, "past")
		// An ADD that is refused leaves the value alone.
		mustSet(t, ctx, "past", "old")
		if err := memcache.Add(ctx, &memcache.Item{Key: "past", Value: []byte("new"), Expiration: time.Millisecond}); err != memcache.ErrNotStored {
			t.Fatalf("Add: %v", err)
		}
		wantValue(t, ctx, "past", "old")
	})
}

func TestMemcacheLRU(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		// Each item costs its 1-byte key, its 99-byte value and the
		// per-item overhead: c bytes.
		val := strings.Repeat("v", 99)
		const c = 100 + mcItemOverhead
		s.SetMemcacheLimit(2*c + 300)
		mustSet(t, ctx, "a", val)
		mustSet(t, ctx, "b", val)
		wantValue(t, ctx, "a", val) // a is now more recent than b
		mustSet(t, ctx, "c", val)   // 3c > 2c+300: evicts b
		wantMiss(t, ctx, "b")
		wantValue(t, ctx, "a", val)
		wantValue(t, ctx, "c", val)

		// Peek does not refresh: a peeked item is still evicted first.
		memcache.Peek(ctx, "a") // order, oldest first: a, c
		mustSet(t, ctx, "d", val)
		wantMiss(t, ctx, "a")
		wantValue(t, ctx, "c", val)
		wantValue(t, ctx, "d", val)

		// Increment refreshes too.
		s.FlushMemcache()
		mustSet(t, ctx, "x", "1")
		mustSet(t, ctx, "y", val)
		memcache.Increment(ctx, "x", 1, 0)
		mustSet(t, ctx, "z", val) // (2 + overhead) + c + c fits
		mustSet(t, ctx, "w", val) // over: y goes first
		wantMiss(t, ctx, "y")
		wantValue(t, ctx, "x", "2")

		// An item bigger than the whole cap is not kept, and evicts nothing.
		mustSet(t, ctx, "huge", strings.Repeat("h", 3*c))
		wantMiss(t, ctx, "huge")
		wantValue(t, ctx, "w", val)

		// Lowering the cap evicts at once, least recently used first.
		s.FlushMemcache()
		mustSet(t, ctx, "a", val)
		mustSet(t, ctx, "b", val)
		s.SetMemcacheLimit(c + c/2)
		wantMiss(t, ctx, "a")
		wantValue(t, ctx, "b", val)
		st, _ := memcache.Stats(ctx)
		if st.Items != 1 || st.Bytes != 100 {
			t.Fatalf("Stats = %+v, want 1 item of 100 bytes", *st)
		}

		s.SetMemcacheLimit(0)
		wantMiss(t, ctx, "b")
		mustSet(t, ctx, "a", "")
		wantMiss(t, ctx, "a")

		s.SetMemcacheLimit(DefaultMemcacheLimit)
		mustSet(t, ctx, "a", val)
		wantValue(t, ctx, "a", val)
	})
}

func TestMemcacheLRUManyItems(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	const n, size = 1000, 100
	s.SetMemcacheLimit(n / 2 * (size + mcItemOverhead))
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("%04d", i)
		mustSet(t, ctx, key, strings.Repeat("v", size-len(key)))
	}
	st, err := memcache.Stats(ctx)
	if err != nil || st.Items != n/2 || st.Bytes != n/2*size {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	wantMiss(t, ctx, "0499")
	if _, err := memcache.Get(ctx, "0500"); err != nil {
		t.Fatal(err)
	}
}
