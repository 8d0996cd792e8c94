package aelocal

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// mcCall makes a raw memcache call with messages built by name, for what
// the client does not expose (BatchIncrement, delete locks, cas_id values).
func mcCall(t *testing.T, ctx context.Context, method, req, resp string, fill func(in pmsg)) (pmsg, error) {
	t.Helper()
	in, err := newMsg("appengine.v2.Memcache" + req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newMsg("appengine.v2.Memcache" + resp)
	if err != nil {
		t.Fatal(err)
	}
	fill(in)
	err = appengine.APICall(ctx, "memcache", method, protoV1(in), protoV1(out))
	return out, err
}

// rawGet gets keys in namespace ns with for_cas, and for_peek if peek.
func rawGet(t *testing.T, ctx context.Context, ns string, peek bool, keys ...string) map[string]pmsg {
	t.Helper()
	out, err := mcCall(t, ctx, "Get", "GetRequest", "GetResponse", func(in pmsg) {
		in.Set("name_space", ns)
		in.Set("for_cas", true)
		in.Set("for_peek", peek)
		for _, k := range keys {
			in.Append("key", k)
		}
	})
	if err != nil {
		t.Fatalf("raw Get: %v", err)
	}
	m := make(map[string]pmsg)
	for _, it := range out.Msgs("item") {
		m[it.Str("key")] = it
	}
	return m
}

func mustSet(t *testing.T, ctx context.Context, key, value string) {
	t.Helper()
	if err := memcache.Set(ctx, &memcache.Item{Key: key, Value: []byte(value)}); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, ctx context.Context, key, value string) {
	t.Helper()
	it, err := memcache.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, value)
	}
	if string(it.Value) != value {
		t.Fatalf("Get(%q) = %q, want %q", key, it.Value, value)
	}
}

func wantMiss(t *testing.T, ctx context.Context, key string) {
	t.Helper()
	if it, err := memcache.Get(ctx, key); err != memcache.ErrCacheMiss {
		t.Fatalf("Get(%q) = %v, %v, want ErrCacheMiss", key, it, err)
	}
}

func wantInvalid(t *testing.T, err error, mention ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want INVALID_VALUE")
	}
	msg := err.Error()
	for _, s := range append([]string{"INVALID_VALUE"}, mention...) {
		if !strings.Contains(msg, s) {
			t.Fatalf("error %q does not mention %q", msg, s)
		}
	}
}

func TestMemcacheGetSet(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		wantMiss(t, ctx, "a")
		if err := memcache.Set(ctx, &memcache.Item{Key: "a", Value: []byte("1"), Flags: 42}); err != nil {
			t.Fatal(err)
		}
		it, err := memcache.Get(ctx, "a")
		if err != nil || string(it.Value) != "1" || it.Flags != 42 || it.Key != "a" {
			t.Fatalf("Get = %+v, %v", it, err)
		}
		if it.Timestamps.Expiration != nil || it.Timestamps.LastAccess != nil {
			t.Fatalf("Get returned timestamps: %+v", it.Timestamps)
		}
		mustSet(t, ctx, "a", "2")
		wantValue(t, ctx, "a", "2")

		// Empty keys and values are accepted.
		mustSet(t, ctx, "", "")
		wantValue(t, ctx, "", "")

		if err := memcache.SetMulti(ctx, []*memcache.Item{
			{Key: "b", Value: []byte("B")}, {Key: "c", Value: []byte("C")},
		}); err != nil {
			t.Fatal(err)
		}
		got, err := memcache.GetMulti(ctx, []string{"a", "b", "missing", "c", "b"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || string(got["a"].Value) != "2" || string(got["b"].Value) != "B" || string(got["c"].Value) != "C" {
			t.Fatalf("GetMulti = %v", got)
		}
		got, err = memcache.GetMulti(ctx, []string{"x", "y"})
		if err != nil || len(got) != 0 {
			t.Fatalf("GetMulti of misses = %v, %v", got, err)
		}

		// Codecs ride on Set and Get.
		type obj struct{ N int }
		if err := memcache.JSON.Set(ctx, &memcache.Item{Key: "j", Object: obj{7}}); err != nil {
			t.Fatal(err)
		}
		var o obj
		if _, err := memcache.JSON.Get(ctx, "j", &o); err != nil || o.N != 7 {
			t.Fatalf("JSON.Get = %+v, %v", o, err)
		}
	})
}

func TestMemcacheAddReplace(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		if err := memcache.Add(ctx, &memcache.Item{Key: "k", Value: []byte("1")}); err != nil {
			t.Fatal(err)
		}
		if err := memcache.Add(ctx, &memcache.Item{Key: "k", Value: []byte("2")}); err != memcache.ErrNotStored {
			t.Fatalf("second Add: %v, want ErrNotStored", err)
		}
		wantValue(t, ctx, "k", "1")
		err := memcache.AddMulti(ctx, []*memcache.Item{{Key: "k", Value: []byte("x")}, {Key: "n", Value: []byte("y")}})
		me, ok := err.(appengine.MultiError)
		if !ok || len(me) != 2 || me[0] != memcache.ErrNotStored || me[1] != nil {
			t.Fatalf("AddMulti: %v", err)
		}
		wantValue(t, ctx, "n", "y")

		// REPLACE is not in the Go client; send it raw.
		replace := func(key, value string) int64 {
			out, err := mcCall(t, ctx, "Set", "SetRequest", "SetResponse", func(in pmsg) {
				it := in.AppendMsg("item")
				it.Set("key", key)
				it.Set("value", value)
				it.Set("set_policy", 3)
			})
			if err != nil {
				t.Fatal(err)
			}
			return out.IntList("set_status")[0]
		}
		if st := replace("k", "r"); st != 1 {
			t.Fatalf("REPLACE of a present key: status %d, want STORED", st)
		}
		wantValue(t, ctx, "k", "r")
		if st := replace("absent", "r"); st != 2 {
			t.Fatalf("REPLACE of an absent key: status %d, want NOT_STORED", st)
		}
		wantMiss(t, ctx, "absent")
	})
}

func TestMemcacheCompareAndSwap(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		mustSet(t, ctx, "k", "v0")
		it, err := memcache.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		stale, _ := memcache.Get(ctx, "k")
		it.Value = []byte("v1")
		if err := memcache.CompareAndSwap(ctx, it); err != nil {
			t.Fatalf("CAS: %v", err)
		}
		wantValue(t, ctx, "k", "v1")
		stale.Value = []byte("stale")
		if err := memcache.CompareAndSwap(ctx, stale); err != memcache.ErrCASConflict {
			t.Fatalf("CAS of a stale item: %v, want ErrCASConflict", err)
		}
		// Reusing the item that just won is stale too: the write changed its cas_id.
		if err := memcache.CompareAndSwap(ctx, it); err != memcache.ErrCASConflict {
			t.Fatalf("second CAS with the same item: %v, want ErrCASConflict", err)
		}
		wantValue(t, ctx, "k", "v1")

		// An item never read has no cas_id.
		if err := memcache.CompareAndSwap(ctx, &memcache.Item{Key: "k", Value: []byte("x")}); err != memcache.ErrNotStored {
			t.Fatalf("CAS without cas_id: %v, want ErrNotStored", err)
		}

		// An increment is a write too.
		mustSet(t, ctx, "n", "1")
		nit, _ := memcache.Get(ctx, "n")
		if _, err := memcache.Increment(ctx, "n", 1, 0); err != nil {
			t.Fatal(err)
		}
		if err := memcache.CompareAndSwap(ctx, nit); err != memcache.ErrCASConflict {
			t.Fatalf("CAS after Increment: %v, want ErrCASConflict", err)
		}

		// Deleted, flushed or evicted in between: ErrNotStored.
		it, _ = memcache.Get(ctx, "k")
		memcache.Delete(ctx, "k")
		if err := memcache.CompareAndSwap(ctx, it); err != memcache.ErrNotStored {
			t.Fatalf("CAS after Delete: %v, want ErrNotStored", err)
		}
		mustSet(t, ctx, "k", "v2")
		it, _ = memcache.Get(ctx, "k")
		s.FlushMemcache()
		if err := memcache.CompareAndSwap(ctx, it); err != memcache.ErrNotStored {
			t.Fatalf("CAS after FlushMemcache: %v, want ErrNotStored", err)
		}
		mustSet(t, ctx, "k", "v3")
		it, _ = memcache.Get(ctx, "k")
		s.SetMemcacheLimit(0)
		s.SetMemcacheLimit(DefaultMemcacheLimit)
		if err := memcache.CompareAndSwap(ctx, it); err != memcache.ErrNotStored {
			t.Fatalf("CAS after eviction: %v, want ErrNotStored", err)
		}
		// A key set anew after a flush gets a new cas_id: an old item does
		// not match it.
		mustSet(t, ctx, "k", "v4")
		if err := memcache.CompareAndSwap(ctx, it); err != memcache.ErrCASConflict {
			t.Fatalf("CAS against a re-set key: %v, want ErrCASConflict", err)
		}

		// CompareAndSwapMulti reports per item.
		mustSet(t, ctx, "a", "a")
		mustSet(t, ctx, "b", "b")
		items, _ := memcache.GetMulti(ctx, []string{"a", "b"})
		mustSet(t, ctx, "b", "changed")
		err = memcache.CompareAndSwapMulti(ctx, []*memcache.Item{items["a"], items["b"]})
		me, ok := err.(appengine.MultiError)
		if !ok || me[0] != nil || me[1] != memcache.ErrCASConflict {
			t.Fatalf("CompareAndSwapMulti: %v", err)
		}
	})
}

func TestMemcacheCasIDsUnique(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		seen := make(map[uint64]string)
		record := func(ns string, keys ...string) {
			t.Helper()
			got := rawGet(t, ctx, ns, false, keys...)
			for _, k := range keys {
				it, ok := got[k]
				if !ok || !it.Has("cas_id") {
					t.Fatalf("%s/%s: no item or no cas_id", ns, k)
				}
				id := it.Uint("cas_id")
				if id == 0 {
					t.Fatalf("%s/%s: cas_id 0", ns, k)
				}
				if prev, dup := seen[id]; dup {
					t.Fatalf("cas_id %d of %s/%s already seen for %s", id, ns, k, prev)
				}
				seen[id] = ns + "/" + k
			}
		}
		mustSet(t, ctx, "a", "1")
		mustSet(t, ctx, "b", "1")
		nsCtx, err := appengine.Namespace(ctx, "ns")
		if err != nil {
			t.Fatal(err)
		}
		mustSet(t, nsCtx, "a", "1")
		record("", "a", "b")
		record("ns", "a")
		mustSet(t, ctx, "a", "1") // same value, new write
		record("", "a")
		memcache.Increment(ctx, "b", 1, 0)
		record("", "b")
		// Without for_cas no cas_id is sent.
		out, err := mcCall(t, ctx, "Get", "GetRequest", "GetResponse", func(in pmsg) { in.Append("key", "a") })
		if err != nil || len(out.Msgs("item")) != 1 || out.Msgs("item")[0].Has("cas_id") {
			t.Fatalf("Get without for_cas: %v, %v", out.m, err)
		}
	})
}

func TestMemcacheDelete(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		mustSet(t, ctx, "a", "1")
		if err := memcache.Delete(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		wantMiss(t, ctx, "a")
		if err := memcache.Delete(ctx, "a"); err != memcache.ErrCacheMiss {
			t.Fatalf("Delete of a missing key: %v, want ErrCacheMiss", err)
		}
		mustSet(t, ctx, "b", "1")
		mustSet(t, ctx, "d", "1")
		err := memcache.DeleteMulti(ctx, []string{"b", "c", "d"})
		me, ok := err.(appengine.MultiError)
		if !ok || len(me) != 3 || me[0] != nil || me[1] != memcache.ErrCacheMiss || me[2] != nil {
			t.Fatalf("DeleteMulti: %v", err)
		}
		wantMiss(t, ctx, "b")
		wantMiss(t, ctx, "d")
		if err := memcache.DeleteMulti(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMemcacheDeleteLock(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		stopClock(s) // expiry is checked to the second
		del := func(key string, deleteTime uint32) int64 {
			t.Helper()
			out, err := mcCall(t, ctx, "Delete", "DeleteRequest", "DeleteResponse", func(in pmsg) {
				it := in.AppendMsg("item")
				it.Set("key", key)
				it.Set("delete_time", deleteTime)
			})
			if err != nil {
				t.Fatal(err)
			}
			return out.IntList("delete_status")[0]
		}
		mustSet(t, ctx, "k", "v")
		if st := del("k", 10); st != 1 {
			t.Fatalf("Delete status %d, want DELETED", st)
		}
		wantMiss(t, ctx, "k")
		if _, err := memcache.Peek(ctx, "k"); err != memcache.ErrCacheMiss {
			t.Fatalf("Peek of a delete-locked key: %v, want ErrCacheMiss", err)
		}
		got := rawGet(t, ctx, "", true, "k")["k"]
		if !got.Bool("is_delete_locked") {
			t.Fatalf("raw peek: %v, want is_delete_locked", got.m)
		}
		if want := s.Now().Add(10 * time.Second).Unix(); absDiff(got.Msg("timestamps").Int("delete_lock_time_sec"), want) > 1 {
			t.Fatalf("delete_lock_time_sec = %d, want about %d", got.Msg("timestamps").Int("delete_lock_time_sec"), want)
		}
		if err := memcache.Add(ctx, &memcache.Item{Key: "k", Value: []byte("a")}); err != memcache.ErrNotStored {
			t.Fatalf("Add during the lock: %v, want ErrNotStored", err)
		}
		if err := memcache.Delete(ctx, "k"); err != memcache.ErrCacheMiss {
			t.Fatalf("Delete during the lock: %v, want ErrCacheMiss", err)
		}
		if _, err := memcache.IncrementExisting(ctx, "k", 1); err != memcache.ErrCacheMiss {
			t.Fatalf("IncrementExisting during the lock: %v, want ErrCacheMiss", err)
		}
		s.FastForward(11 * time.Second)
		if err := memcache.Add(ctx, &memcache.Item{Key: "k", Value: []byte("a")}); err != nil {
			t.Fatalf("Add after the lock: %v", err)
		}
		wantValue(t, ctx, "k", "a")

		// SET ends a lock.
		del("k", 60)
		mustSet(t, ctx, "k", "s")
		wantValue(t, ctx, "k", "s")

		// A lock needs something to delete.
		if st := del("none", 60); st != 2 {
			t.Fatalf("Delete of a missing key: status %d, want NOT_FOUND", st)
		}
		if err := memcache.Add(ctx, &memcache.Item{Key: "none", Value: []byte("a")}); err != nil {
			t.Fatalf("Add after a missed locking delete: %v", err)
		}
	})
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestMemcacheIncrement(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		stopClock(s) // expiry is checked to the second
		if _, err := memcache.IncrementExisting(ctx, "n", 1); err != memcache.ErrCacheMiss {
			t.Fatalf("IncrementExisting of a missing key: %v, want ErrCacheMiss", err)
		}
		wantMiss(t, ctx, "n")
		v, err := memcache.Increment(ctx, "n", 5, 10)
		if err != nil || v != 15 {
			t.Fatalf("Increment = %d, %v, want 15", v, err)
		}
		wantValue(t, ctx, "n", "15")
		v, err = memcache.IncrementExisting(ctx, "n", -4)
		if err != nil || v != 11 {
			t.Fatalf("IncrementExisting(-4) = %d, %v, want 11", v, err)
		}
		v, err = memcache.Increment(ctx, "n", -100, 0)
		if err != nil || v != 0 {
			t.Fatalf("decrement below zero = %d, %v, want 0", v, err)
		}
		v, err = memcache.Increment(ctx, "m", -3, 2)
		if err != nil || v != 0 {
			t.Fatalf("decrement of an initial value = %d, %v, want 0", v, err)
		}

		mustSet(t, ctx, "max", strconv.FormatUint(1<<64-1, 10))
		v, err = memcache.IncrementExisting(ctx, "max", 2)
		if err != nil || v != 1 {
			t.Fatalf("increment past 2^64-1 = %d, %v, want 1 (wrapped)", v, err)
		}

		// Flags and expiry survive an increment.
		if err := memcache.Set(ctx, &memcache.Item{Key: "f", Value: []byte("1"), Flags: 9, Expiration: time.Minute}); err != nil {
			t.Fatal(err)
		}
		memcache.Increment(ctx, "f", 1, 0)
		it, err := memcache.Peek(ctx, "f")
		if err != nil || string(it.Value) != "2" || it.Flags != 9 || it.Timestamps.Expiration == nil {
			t.Fatalf("Peek after Increment = %+v, %v", it, err)
		}
		s.FastForward(2 * time.Minute)
		wantMiss(t, ctx, "f")

		for _, bad := range []string{"abc", "-1", "", "1.5", "18446744073709551616"} {
			mustSet(t, ctx, "bad", bad)
			_, err := memcache.Increment(ctx, "bad", 1, 0)
			wantInvalid(t, err, "decimal")
			wantValue(t, ctx, "bad", bad)
		}
	})
}

func TestMemcacheBatchIncrement(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		mustSet(t, ctx, "a", "10")
		mustSet(t, ctx, "text", "x")
		nsCtx, _ := appengine.Namespace(ctx, "ns")
		mustSet(t, nsCtx, "a", "100")
		type item struct {
			key     string
			delta   uint64
			dec     bool
			initial *uint64
			ns      *string
		}
		five, other := uint64(5), "ns"
		items := []item{
			{key: "a", delta: 1},
			{key: "a", delta: 3, dec: true},
			{key: "missing", delta: 1},
			{key: "new", delta: 2, initial: &five},
			{key: "text", delta: 1},
			{key: "a", delta: 1, ns: &other},
		}
		out, err := mcCall(t, ctx, "BatchIncrement", "BatchIncrementRequest", "BatchIncrementResponse", func(in pmsg) {
			for _, it := range items {
				r := in.AppendMsg("item")
				r.Set("key", it.key)
				r.Set("delta", it.delta)
				if it.dec {
					r.Set("direction", 2)
				}
				if it.initial != nil {
					r.Set("initial_value", *it.initial)
				}
				if it.ns != nil {
					r.Set("name_space", *it.ns)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			status int64
			value  uint64
			has    bool
		}
		want := []result{{1, 11, true}, {1, 8, true}, {2, 0, false}, {1, 7, true}, {3, 0, false}, {1, 101, true}}
		got := out.Msgs("item")
		if len(got) != len(want) {
			t.Fatalf("%d results, want %d", len(got), len(want))
		}
		for i, r := range got {
			g := result{r.Int("increment_status"), r.Uint("new_value"), r.Has("new_value")}
			if g != want[i] {
				t.Errorf("item %d: got %+v, want %+v", i, g, want[i])
			}
		}
		wantValue(t, ctx, "a", "8")
		wantValue(t, ctx, "new", "7")
		wantValue(t, nsCtx, "a", "101")

		// The request's own name_space applies to items without one.
		_, err = mcCall(t, ctx, "BatchIncrement", "BatchIncrementRequest", "BatchIncrementResponse", func(in pmsg) {
			in.Set("name_space", "ns")
			in.AppendMsg("item").Set("key", "a")
		})
		if err != nil {
			t.Fatal(err)
		}
		wantValue(t, nsCtx, "a", "102")

		// A key over the limit fails the whole batch and changes nothing.
		_, err = mcCall(t, ctx, "BatchIncrement", "BatchIncrementRequest", "BatchIncrementResponse", func(in pmsg) {
			in.AppendMsg("item").Set("key", "a")
			in.AppendMsg("item").Set("key", strings.Repeat("k", 251))
		})
		wantInvalid(t, err, "251", "250-byte limit")
		wantValue(t, ctx, "a", "8")
	})
}

func TestMemcacheFlush(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		nsCtx, _ := appengine.Namespace(ctx, "ns")
		mustSet(t, ctx, "a", "1")
		mustSet(t, nsCtx, "a", "2")
		if err := memcache.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		wantMiss(t, ctx, "a")
		wantMiss(t, nsCtx, "a")
		mustSet(t, ctx, "a", "1")
		mustSet(t, nsCtx, "b", "2")
		s.FlushMemcache()
		wantMiss(t, ctx, "a")
		wantMiss(t, nsCtx, "b")
		st, err := memcache.Stats(ctx)
		if err != nil || st.Items != 0 || st.Bytes != 0 {
			t.Fatalf("Stats after flush = %+v, %v", st, err)
		}
		mustSet(t, ctx, "a", "3")
		wantValue(t, ctx, "a", "3")
	})
}

func TestMemcachePeek(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		stopClock(s) // expiry is checked to the second
		set := s.Now()
		if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v"), Expiration: time.Hour}); err != nil {
			t.Fatal(err)
		}
		mustSet(t, ctx, "forever", "v")
		s.FastForward(time.Minute)
		it, err := memcache.Peek(ctx, "k")
		if err != nil || string(it.Value) != "v" {
			t.Fatalf("Peek = %+v, %v", it, err)
		}
		ts := it.Timestamps
		if ts.Expiration == nil || absDiff(ts.Expiration.Unix(), set.Add(time.Hour).Unix()) > 1 {
			t.Fatalf("Expiration = %v, want about %v", ts.Expiration, set.Add(time.Hour))
		}
		if ts.LastAccess == nil || absDiff(ts.LastAccess.Unix(), set.Unix()) > 1 {
			t.Fatalf("LastAccess = %v, want about %v", ts.LastAccess, set)
		}
		// A peek is no access: LastAccess stays.
		s.FastForward(time.Minute)
		it, _ = memcache.Peek(ctx, "k")
		if absDiff(it.Timestamps.LastAccess.Unix(), set.Unix()) > 1 {
			t.Fatalf("LastAccess after a second Peek = %v, want about %v", it.Timestamps.LastAccess, set)
		}
		// A Get is.
		got := s.Now()
		wantValue(t, ctx, "k", "v")
		it, _ = memcache.Peek(ctx, "k")
		if absDiff(it.Timestamps.LastAccess.Unix(), got.Unix()) > 1 {
			t.Fatalf("LastAccess after Get = %v, want about %v", it.Timestamps.LastAccess, got)
		}
		m, err := memcache.PeekMulti(ctx, []string{"k", "forever", "missing"})
		if err != nil || len(m) != 2 {
			t.Fatalf("PeekMulti = %v, %v", m, err)
		}
		if m["forever"].Timestamps.Expiration != nil || m["forever"].Timestamps.LastAccess == nil {
			t.Fatalf("timestamps of an item without expiry: %+v", m["forever"].Timestamps)
		}
		// Peek hands out a usable cas_id.
		it, _ = memcache.Peek(ctx, "k")
		it.Value = []byte("w")
		if err := memcache.CompareAndSwap(ctx, it); err != nil {
			t.Fatalf("CAS with a peeked item: %v", err)
		}
		if _, err := memcache.Peek(ctx, "missing"); err != memcache.ErrCacheMiss {
			t.Fatalf("Peek of a missing key: %v", err)
		}
	})
}

func TestMemcacheNamespaces(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		a, err := appengine.Namespace(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := appengine.Namespace(ctx, "b")
		mustSet(t, ctx, "k", "default")
		mustSet(t, a, "k", "in a")
		wantValue(t, ctx, "k", "default")
		wantValue(t, a, "k", "in a")
		wantMiss(t, b, "k")
		if err := memcache.Add(ctx, &memcache.Item{Key: "k", Value: []byte("x")}); err != memcache.ErrNotStored {
			t.Fatalf("Add: %v", err)
		}
		if err := memcache.Add(b, &memcache.Item{Key: "k", Value: []byte("in b")}); err != nil {
			t.Fatalf("Add in b: %v", err)
		}
		if err := memcache.Delete(a, "k"); err != nil {
			t.Fatal(err)
		}
		wantMiss(t, a, "k")
		wantValue(t, ctx, "k", "default")
		wantValue(t, b, "k", "in b")
		if v, err := memcache.Increment(a, "n", 1, 0); err != nil || v != 1 {
			t.Fatalf("Increment in a = %d, %v", v, err)
		}
		if v, err := memcache.Increment(b, "n", 1, 10); err != nil || v != 11 {
			t.Fatalf("Increment in b = %d, %v", v, err)
		}
		if _, err := memcache.IncrementExisting(ctx, "n", 1); err != memcache.ErrCacheMiss {
			t.Fatalf("IncrementExisting in the default namespace: %v", err)
		}
		// CAS items carry no namespace: a cas_id from a does not apply in b.
		it, _ := memcache.Get(b, "k")
		mustSet(t, a, "k", "a again")
		ita, _ := memcache.Get(a, "k")
		it.Value = []byte("swapped")
		if err := memcache.CompareAndSwap(a, it); err != memcache.ErrCASConflict {
			t.Fatalf("CAS of b's item in a: %v, want ErrCASConflict", err)
		}
		ita.Value = []byte("swapped")
		if err := memcache.CompareAndSwap(a, ita); err != nil {
			t.Fatal(err)
		}
		wantValue(t, b, "k", "in b")
	})
}

func TestMemcacheFailNext(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		mustSet(t, ctx, "k", "v")
		s.FailNext("memcache", "Get", 1)
		if _, err := memcache.Get(ctx, "k"); err == nil || err == memcache.ErrCacheMiss || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("Get after FailNext: %v, want an injected failure", err)
		}
		wantValue(t, ctx, "k", "v")

		s.FailNext("memcache", "", 2)
		if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("w")}); err == nil {
			t.Fatal("Set: want an injected failure")
		}
		if _, err := memcache.Get(ctx, "k"); err == nil {
			t.Fatal("Get: want an injected failure")
		}
		wantValue(t, ctx, "k", "v") // the failed Set stored nothing
		mustSet(t, ctx, "k", "w")
		wantValue(t, ctx, "k", "w")

		s.FailNext("memcache", "Delete", 5)
		s.FailNext("memcache", "Delete", 0)
		if err := memcache.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete after a cancelled FailNext: %v", err)
		}
	})
}

func TestMemcacheConcurrent(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		const workers, rounds = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				key := fmt.Sprintf("w%d", w)
				for i := 0; i < rounds; i++ {
					if _, err := memcache.Increment(ctx, "counter", 1, 0); err != nil {
						errs <- err
					}
					if err := memcache.Set(ctx, &memcache.Item{Key: key, Value: []byte(strconv.Itoa(i))}); err != nil {
						errs <- err
					}
					if _, err := memcache.Get(ctx, key); err != nil {
						errs <- err
					}
					if i%10 == 0 {
						memcache.Stats(ctx)
						s.SetMemcacheLimit(DefaultMemcacheLimit)
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		wantValue(t, ctx, "counter", strconv.Itoa(workers*rounds))
	})
}
