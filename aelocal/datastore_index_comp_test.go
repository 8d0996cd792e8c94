package aelocal

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestCompositeIndexEntries checks production's entry rules on composite
// indexes: an entry per combination of distinct indexed values, once per
// ancestor of an ancestor index, none when a property has no indexed value,
// and none (the index marked) past maxIndexEntries.
func TestCompositeIndexEntries(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	parent := datastore.NewKey(ctx, "G", "", 1, nil)
	put := func(k *datastore.Key, pl datastore.PropertyList) {
		t.Helper()
		if _, err := datastore.Put(ctx, k, &pl); err != nil {
			t.Fatal(err)
		}
	}
	multi := func(name string, vals ...any) datastore.PropertyList {
		var pl datastore.PropertyList
		for _, v := range vals {
			pl = append(pl, datastore.Property{Name: name, Value: v, Multiple: true})
		}
		return pl
	}
	// A: two distinct values (one repeated), B: three, C unindexed.
	pl := append(multi("A", int64(1), int64(2), int64(1)), multi("B", "x", "y", "z")...)
	pl = append(pl, datastore.Property{Name: "C", Value: int64(5), NoIndex: true})
	put(datastore.NewKey(ctx, "K", "", 1, parent), pl)
	// No B: no entry in an index of A and B.
	put(datastore.NewKey(ctx, "K", "", 2, nil), multi("A", int64(3)))
	// 150 x 150 values: 22,500 entries, past maxIndexEntries.
	var many []any
	for i := range 150 {
		many = append(many, int64(i))
	}
	var manyB []any
	for i := range 150 {
		manyB = append(manyB, fmt.Sprint(i))
	}
	put(datastore.NewKey(ctx, "K", "", 3, nil), append(multi("A", many...), multi("B", manyB...)...))

	d := s.datastore
	d.mu.Lock()
	sp := d.spaces[nsKey{app: parent.AppID()}]
	ki := sp.indexLocked("K")
	count := func(def dsIndex) (int, int) {
		ix, b := ki.compLocked("K", def)
		if b != nil {
			b.run()
			sp.finishBuildLocked(b)
			ix = ki.comps[def.yaml()]
		}
		return ix.tree.Len(), ix.exploded
	}
	ab := dsIndex{kind: "K", props: []dsIndexProp{{"A", dirAsc}, {"B", dirDesc}}}
	if n, exploded := count(ab); n != 6 || exploded != 1 {
		t.Errorf("index (A, -B): %d entries, %d exploded entities; want 2x3 = 6 and 1", n, exploded)
	}
	anc := dsIndex{kind: "K", ancestor: true, props: []dsIndexProp{{"A", dirAsc}, {"B", dirAsc}}}
	if n, _ := count(anc); n != 12 {
		t.Errorf("ancestor index (A, B): %d entries; want 2x3 per ancestor, 2 ancestors = 12", n)
	}
	if n, _ := count(dsIndex{kind: "K", props: []dsIndexProp{{"A", dirAsc}, {"C", dirAsc}}}); n != 0 {
		t.Errorf("index (A, C) on an unindexed C: %d entries; want 0", n)
	}
	d.mu.Unlock()

	// A query the index (A, -B) would serve takes the single-property
	// indexes while an entity past the limit is in it, with the same
	// answer; once it is gone the index serves.
	q := datastore.NewQuery("K").Filter("A =", int64(1)).Order("-B").KeysOnly()
	keysOf := func() string {
		keys, err := q.GetAll(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(keys)
	}
	d.mu.Lock()
	fallback, comp := d.stats.compFallback, d.stats.comp
	d.mu.Unlock()
	k1, k3 := datastore.NewKey(ctx, "K", "", 1, parent), datastore.NewKey(ctx, "K", "", 3, nil)
	if got := keysOf(); got != fmt.Sprint([]*datastore.Key{k1, k3}) {
		t.Errorf("query: %s; want [%v %v]", got, k1, k3)
	}
	d.mu.Lock()
	if d.stats.compFallback != fallback+1 || d.stats.comp != comp {
		t.Errorf("with an exploded entity: %d fallbacks, %d composite reads; want 1, 0", d.stats.compFallback-fallback, d.stats.comp-comp)
	}
	d.mu.Unlock()
	if err := datastore.Delete(ctx, k3); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(); got != fmt.Sprint([]*datastore.Key{k1}) {
		t.Errorf("query: %s; want [%v]", got, k1)
	}
	d.mu.Lock()
	if d.stats.comp != comp+1 {
		t.Errorf("without it: %d composite reads; want 1", d.stats.comp-comp)
	}
	d.mu.Unlock()
}

// TestDeclaredCompositeIndexServes checks that an index index.yaml
// declares serves the queries whose equality properties it lists in
// another order than the recommended one, and that the queries read about
// as many entries as they return.
func TestDeclaredCompositeIndexServes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.yaml")
	yaml := "indexes:\n- kind: E\n  properties:\n  - name: C\n  - name: B\n  - name: T\n    direction: desc\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewServerOptions(&Options{IndexYAML: path, RequireIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := middlewareContext(t, s)
	d := s.datastore
	type E struct {
		B, C string
		T    int64
	}
	keys := make([]*datastore.Key, 300)
	vals := make([]E, 300)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "E", "", int64(i+1), nil)
		vals[i] = E{B: fmt.Sprint(i % 3), C: fmt.Sprint(i % 5), T: int64(i * 37 % 300)}
	}
	if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	q := datastore.NewQuery("E").Filter("B =", "1").Filter("C =", "2").Order("-T").Limit(5)
	run := func(plan bool) string {
		d.mu.Lock()
		d.noPlan = !plan
		d.mu.Unlock()
		var got []E
		if _, err := q.GetAll(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 5 {
			t.Errorf("%d results; want 5", len(got))
		}
		return fmt.Sprint(got)
	}
	d.mu.Lock()
	before := d.stats
	d.mu.Unlock()
	got := run(true)
	d.mu.Lock()
	entries, comp := d.stats.entries-before.entries, d.stats.comp-before.comp
	d.mu.Unlock()
	want := run(false)
	if got != want {
		t.Errorf("planned %s, full evaluation %s", got, want)
	}
	// 5 results and one to tell whether more remain.
	if comp != 1 || entries != 6 {
		t.Errorf("%d composite reads, %d entries read; want 1 and 6", comp, entries)
	}
}

// TestCompositeBuildLetsWritesThrough checks that the first query of a
// composite index builds it without the datastore's lock, from a snapshot:
// writes during the build go through, the query answers as of the
// snapshot, and the index kept has the writes (replayed from the log).
func TestCompositeBuildLetsWritesThrough(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	type W struct{ G, T int64 }
	keys := make([]*datastore.Key, 50)
	vals := make([]W, 50)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "W", "", int64(100+i), nil)
		vals[i] = W{int64(i % 2), int64(i)}
	}
	if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	added := datastore.NewKey(ctx, "W", "", 1, nil)
	removed := keys[49] // G 1, T 49: the first result
	writes := 0
	d.mu.Lock()
	d.planReadHook = func() {
		if !d.mu.TryLock() {
			t.Error("a planned read runs with the datastore's lock held")
			return
		}
		building := 0
		for _, ki := range d.spaces[nsKey{app: added.AppID()}].idx {
			building += len(ki.building)
		}
		d.mu.Unlock()
		if writes > 0 {
			return
		}
		writes++
		if building != 1 {
			t.Errorf("%d composite indexes being built; want 1", building)
		}
		if _, err := datastore.Put(ctx, added, &W{1, 1000}); err != nil {
			t.Error(err)
		}
		if err := datastore.Delete(ctx, removed); err != nil {
			t.Error(err)
		}
	}
	d.mu.Unlock()
	q := datastore.NewQuery("W").Filter("G =", int64(1)).Order("-T").KeysOnly().Limit(3)
	first := func() *datastore.Key {
		got, err := q.GetAll(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("%d results; want 3", len(got))
		}
		return got[0]
	}
	d.mu.Lock()
	comp := d.stats.comp
	d.mu.Unlock()
	// As of the snapshot: the removed entity first, the added one absent.
	if got := first(); !got.Equal(removed) {
		t.Errorf("first query: %v first; want %v", got, removed)
	}
	// The index kept has both writes.
	if got := first(); !got.Equal(added) {
		t.Errorf("second query: %v first; want %v", got, added)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stats.comp != comp+2 || len(d.spaces[nsKey{app: added.AppID()}].idx["W"].building) != 0 {
		t.Errorf("%d composite reads; want 2, and no build left", d.stats.comp-comp)
	}
}
