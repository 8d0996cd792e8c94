package aelocal

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBuildKindIndexMatchesAdd pins that the indexes a load builds
// (buildKindIndex, in parallel) hold the entries that adding each entity to
// a new kindIndex gives, in the same order.
func TestBuildKindIndexMatchesAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 6))
	byKey := make(map[string]*dsEntity)
	for range 2000 {
		ep := randomEntity(r)
		sp, path, err := parseKey(ep.Msg("key"), "key", false)
		if err != nil {
			continue // an ID of 0: incomplete
		}
		e, err := newEntity(sp, path, ep)
		if err != nil {
			t.Fatal(err)
		}
		byKey[path.encode()] = e // one entity per path, as a kind holds
	}
	var ents []*dsEntity
	for _, e := range byKey {
		ents = append(ents, e)
	}
	want := newKindIndex()
	for _, e := range ents {
		want.add(e)
	}
	slices.SortFunc(ents, func(a, b *dsEntity) int { return comparePath(a.path, b.path) })
	for _, workers := range []int{1, 2, 8} {
		got := buildKindIndex(ents, workers)
		var gk, wk []*dsEntity
		got.byKey.Ascend(func(e *dsEntity) bool { gk = append(gk, e); return true })
		want.byKey.Ascend(func(e *dsEntity) bool { wk = append(wk, e); return true })
		if !slices.Equal(gk, wk) {
			t.Fatalf("workers=%d: the kind index differs", workers)
		}
		if len(got.props) != len(want.props) {
			t.Fatalf("workers=%d: %d property indexes, want %d", workers, len(got.props), len(want.props))
		}
		for name, wt := range want.props {
			gt := got.props[name]
			if gt == nil || gt.Len() != wt.Len() {
				t.Fatalf("workers=%d: index of %q missing or of another size", workers, name)
			}
			var ge, we []propEntry
			gt.Ascend(func(x propEntry) bool { ge = append(ge, x); return true })
			wt.Ascend(func(x propEntry) bool { we = append(we, x); return true })
			for i := range we {
				if ge[i].e != we[i].e || compareValue(*ge[i].v, *we[i].v) != 0 {
					t.Fatalf("workers=%d: index of %q differs at entry %d", workers, name, i)
				}
			}
		}
	}
}
