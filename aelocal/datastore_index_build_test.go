package aelocal

import (
	"cmp"
	"math"
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

// TestSortByKeyMatchesCompareValue pins that the keyed sort of a load's
// index build (sortByKey) orders integers, bools and strings as the
// index does: by compareValue, then by position. The strings share
// prefixes of every length, are prefixes of each other, hold zero bytes
// (which the key's padding also has) and are empty; the integers reach
// both ends of int64. A mix of types is left to build's general sort.
func TestSortByKeyMatchesCompareValue(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 7))
	pieces := []string{"", "\x00", "a", "ab", "a\x00", "b", "note about row ", "zz\x00z", "\xff"}
	randomString := func() string {
		s := ""
		for range r.IntN(5) {
			s += pieces[r.IntN(len(pieces))]
		}
		return s
	}
	ints := []int64{math.MinInt64, math.MinInt64 + 1, -1, 0, 1, math.MaxInt64}
	gens := map[string]func() dsValue{
		"int": func() dsValue {
			if r.IntN(3) == 0 {
				return intValue(ints[r.IntN(len(ints))])
			}
			return intValue(r.Int64N(41) - 20)
		},
		"bool":   func() dsValue { return boolValue(r.IntN(2) == 0) },
		"string": func() dsValue { return stringValue(randomString()) },
		"shared prefix": func() dsValue {
			return stringValue("a somewhat longer note about row " + randomString())
		},
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 2, 50, 2000} {
			vals := make([]dsValue, n)
			xs := make([]sortEntry, n)
			for i := range vals {
				vals[i] = gen()
				xs[i] = sortEntry{v: &vals[i], pos: r.IntN(n)}
			}
			want := slices.Clone(xs)
			slices.SortStableFunc(want, func(a, b sortEntry) int {
				if c := compareValue(*a.v, *b.v); c != 0 {
					return c
				}
				return cmp.Compare(a.pos, b.pos)
			})
			if !sortByKey(xs) {
				t.Fatalf("%s: sortByKey refused values of one type", name)
			}
			for i := range want {
				if xs[i].v != want[i].v && (compareValue(*xs[i].v, *want[i].v) != 0 || xs[i].pos != want[i].pos) {
					t.Fatalf("%s, n=%d: entry %d is %v at %d, want %v at %d", name, n, i, *xs[i].v, xs[i].pos, *want[i].v, want[i].pos)
				}
			}
		}
	}
	mixed := []dsValue{intValue(1), stringValue("a"), intValue(0)}
	xs := []sortEntry{{v: &mixed[0]}, {v: &mixed[1], pos: 1}, {v: &mixed[2], pos: 2}}
	if sortByKey(xs) || xs[0].v != &mixed[0] || xs[2].v != &mixed[2] {
		t.Error("sortByKey sorted a mix of types, or moved its entries before refusing")
	}
	mixed2 := []dsValue{intValue(1), boolValue(true)}
	if sortByKey([]sortEntry{{v: &mixed2[0]}, {v: &mixed2[1]}}) {
		t.Error("sortByKey took integers and bools as one type")
	}
}
