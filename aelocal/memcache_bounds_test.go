package aelocal

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// mcRaw sends a memcache call with the namespace set in the request, as a
// client that skips appengine.Namespace's check could.
func mcRaw(ctx context.Context, method, ns string, fill func(in pmsg)) error {
	in, _ := newMsg("appengine.v2.Memcache" + method + "Request")
	out, _ := newMsg("appengine.v2.Memcache" + method + "Response")
	if ns != "" {
		in.Set("name_space", ns)
	}
	if fill != nil {
		fill(in)
	}
	return appengine.APICall(ctx, "memcache", method, protoV1(in), protoV1(out))
}

func TestMemcacheRefusesInvalidNamespaces(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		item := func(in pmsg) {
			it := in.AppendMsg("item")
			it.Set("key", "k")
			it.Set("value", "v")
			it.Set("set_policy", mcSetPolicySet)
		}
		for _, ns := range []string{strings.Repeat("n", 101), "a b", "ns/1", "ü", strings.Repeat("x", 1<<20)} {
			err := mcRaw(ctx, "Set", ns, item)
			if err == nil || !strings.Contains(err.Error(), "does not match regex") {
				t.Fatalf("Set in namespace %.20q: %v, want INVALID_VALUE", ns, err)
			}
			for m, fill := range map[string]func(pmsg){
				"Get":       func(in pmsg) { in.Append("key", "k") },
				"Delete":    func(in pmsg) { in.AppendMsg("item").Set("key", "k") },
				"Increment": func(in pmsg) { in.Set("key", "k"); in.Set("delta", 1) },
			} {
				if err := mcRaw(ctx, m, ns, fill); err == nil || !strings.Contains(err.Error(), "does not match regex") {
					t.Fatalf("%s in namespace %.20q: %v, want INVALID_VALUE", m, ns, err)
				}
			}
			err = mcRaw(ctx, "BatchIncrement", "", func(in pmsg) {
				it := in.AppendMsg("item")
				it.Set("key", "n")
				it.Set("name_space", ns)
			})
			if err == nil || !strings.Contains(err.Error(), "does not match regex") {
				t.Fatalf("BatchIncrement of an item in namespace %.20q: %v, want INVALID_VALUE", ns, err)
			}
		}
		if st, _ := memcache.Stats(ctx); st.Items != 0 {
			t.Fatalf("%d items stored", st.Items)
		}
		// The longest valid namespace works, through the client too.
		nsCtx, err := appengine.Namespace(ctx, strings.Repeat("n", 100))
		if err != nil {
			t.Fatal(err)
		}
		mustSet(t, nsCtx, "k", "v")
		wantValue(t, nsCtx, "k", "v")
	})
}

// The cap counts what an item holds: namespace, key, value and overhead.
// Before it did, items with long namespaces and empty values cost nothing,
// and a 1 MB cap held hundreds of megabytes.
func TestMemcacheLimitCountsEverything(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	const limit = 1 << 20
	s.SetMemcacheLimit(limit)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ns := strings.Repeat("n", 100)
	for i := 0; i < 20000; i++ {
		key := fmt.Sprintf("%0250d", i)
		err := mcRaw(ctx, "Set", fmt.Sprintf("%s%05d", ns[:95], i), func(in pmsg) {
			it := in.AppendMsg("item")
			it.Set("key", key)
			it.Set("value", []byte{})
			it.Set("set_policy", mcSetPolicySet)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	m := s.memcache
	m.mu.Lock()
	var sum int64
	for _, e := range m.items {
		sum += int64(len(e.k.ns)+len(e.k.key)+len(e.value)) + mcItemOverhead
	}
	used, n := m.used, len(m.items)
	m.mu.Unlock()
	if used != sum || used > limit {
		t.Fatalf("used %d, items cost %d, limit %d", used, sum, limit)
	}
	if want := limit / (100 + 250 + mcItemOverhead); n > want {
		t.Fatalf("%d items kept, at most %d fit", n, want)
	}
	// The heap agrees, give or take the allocator's rounding: a bound on
	// memory, not on time.
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d items kept, heap grew by %d bytes under a %d-byte cap", n, grew, limit)
	if grew > 2*limit {
		t.Fatalf("heap grew by %d bytes under a %d-byte cap", grew, limit)
	}
}

// TestMemcacheGetAnswerIsBounded: a GetMulti whose items pass 32 MiB
// brings back those that fit, without an error, as in production; asking
// again for the others brings them.
func TestMemcacheGetAnswerIsBounded(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		const n, size = 40, 1000000
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("k%02d", i)
			v := []byte(strings.Repeat(string(rune('a'+i%26)), size))
			if err := memcache.Set(ctx, &memcache.Item{Key: keys[i], Value: v}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := memcache.GetMulti(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		if fit := mcGetMaxBytes / (size + 3); len(got) != fit {
			t.Fatalf("GetMulti of %d items of 1 MB: %d items, want the %d that fit in 32 MiB", n, len(got), fit)
		}
		var rest []string
		for _, k := range keys {
			if _, ok := got[k]; !ok {
				rest = append(rest, k)
			}
		}
		more, err := memcache.GetMulti(ctx, rest)
		if err != nil {
			t.Fatal(err)
		}
		if len(more) != len(rest) {
			t.Fatalf("asked again for %d items: %d", len(rest), len(more))
		}
		for k, it := range more {
			if len(it.Value) != size {
				t.Fatalf("%s: %d bytes", k, len(it.Value))
			}
		}
	})
}
