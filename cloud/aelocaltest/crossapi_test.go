package aelocaltest

import (
	"context"
	"testing"

	"cloud.google.com/go/datastore"
	"google.golang.org/appengine/v2"
	aeds "google.golang.org/appengine/v2/datastore"
)

// side is one of the two clients, doing the operations of the cross-API
// table in its own terms. A key is a kind and name in a namespace, under
// an optional parent ("Parent", parent).
type side interface {
	name() string
	put(t *testing.T, ns, parent, kind, name string, n int64)
	putInTx(t *testing.T, ns, parent, kind, name string, n int64)
	get(t *testing.T, ns, parent, kind, name string) (n int64, found bool)
	del(t *testing.T, ns, parent, kind, name string)
	query(t *testing.T, ns, parent, kind string, minN int64) []string // names, ordered by N
	allocate(t *testing.T, kind string, n int) []int64
	putAuto(t *testing.T, kind string) int64 // a put with an incomplete key; the ID it got
}

type numbered struct{ N int64 }

type cloudSide struct{ c *datastore.Client }

func (cloudSide) name() string { return "cloud" }

func (s cloudSide) key(ns, parent, kind, name string) *datastore.Key {
	var p *datastore.Key
	if parent != "" {
		p = datastore.NameKey("Parent", parent, nil)
		p.Namespace = ns
	}
	k := datastore.NameKey(kind, name, p)
	k.Namespace = ns
	return k
}

func (s cloudSide) put(t *testing.T, ns, parent, kind, name string, n int64) {
	t.Helper()
	if _, err := s.c.Put(context.Background(), s.key(ns, parent, kind, name), &numbered{n}); err != nil {
		t.Fatal(err)
	}
}

func (s cloudSide) putInTx(t *testing.T, ns, parent, kind, name string, n int64) {
	t.Helper()
	_, err := s.c.RunInTransaction(context.Background(), func(tx *datastore.Transaction) error {
		var x numbered
		if err := tx.Get(s.key(ns, parent, kind, name), &x); err != nil && err != datastore.ErrNoSuchEntity {
			return err
		}
		_, err := tx.Put(s.key(ns, parent, kind, name), &numbered{n})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (s cloudSide) get(t *testing.T, ns, parent, kind, name string) (int64, bool) {
	t.Helper()
	var x numbered
	err := s.c.Get(context.Background(), s.key(ns, parent, kind, name), &x)
	if err == datastore.ErrNoSuchEntity {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return x.N, true
}

func (s cloudSide) del(t *testing.T, ns, parent, kind, name string) {
	t.Helper()
	if err := s.c.Delete(context.Background(), s.key(ns, parent, kind, name)); err != nil {
		t.Fatal(err)
	}
}

func (s cloudSide) query(t *testing.T, ns, parent, kind string, minN int64) []string {
	t.Helper()
	q := datastore.NewQuery(kind).Namespace(ns).FilterField("N", ">=", minN).Order("N")
	if parent != "" {
		q = q.Ancestor(s.key(ns, "", "Parent", parent))
	}
	keys, err := s.c.GetAll(context.Background(), q.KeysOnly(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
	}
	return names
}

func (s cloudSide) allocate(t *testing.T, kind string, n int) []int64 {
	t.Helper()
	keys := make([]*datastore.Key, n)
	for i := range keys {
		keys[i] = datastore.IncompleteKey(kind, nil)
	}
	keys, err := s.c.AllocateIDs(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

func (s cloudSide) putAuto(t *testing.T, kind string) int64 {
	t.Helper()
	k, err := s.c.Put(context.Background(), datastore.IncompleteKey(kind, nil), &numbered{})
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

type aeSide struct{ ctx context.Context }

func (aeSide) name() string { return "appengine/v2" }

func (s aeSide) key(ctx context.Context, ns, parent, kind, name string) *aeds.Key {
	if ns != "" {
		var err error
		if ctx, err = appengine.Namespace(ctx, ns); err != nil {
			panic(err) // the test's own namespaces are valid
		}
	}
	var p *aeds.Key
	if parent != "" {
		p = aeds.NewKey(ctx, "Parent", parent, 0, nil)
	}
	return aeds.NewKey(ctx, kind, name, 0, p)
}

func (s aeSide) put(t *testing.T, ns, parent, kind, name string, n int64) {
	t.Helper()
	if _, err := aeds.Put(s.ctx, s.key(s.ctx, ns, parent, kind, name), &numbered{n}); err != nil {
		t.Fatal(err)
	}
}

func (s aeSide) putInTx(t *testing.T, ns, parent, kind, name string, n int64) {
	t.Helper()
	err := aeds.RunInTransaction(s.ctx, func(tc context.Context) error {
		k := s.key(tc, ns, parent, kind, name)
		var x numbered
		if err := aeds.Get(tc, k, &x); err != nil && err != aeds.ErrNoSuchEntity {
			return err
		}
		_, err := aeds.Put(tc, k, &numbered{n})
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func (s aeSide) get(t *testing.T, ns, parent, kind, name string) (int64, bool) {
	t.Helper()
	var x numbered
	err := aeds.Get(s.ctx, s.key(s.ctx, ns, parent, kind, name), &x)
	if err == aeds.ErrNoSuchEntity {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return x.N, true
}

func (s aeSide) del(t *testing.T, ns, parent, kind, name string) {
	t.Helper()
	if err := aeds.Delete(s.ctx, s.key(s.ctx, ns, parent, kind, name)); err != nil {
		t.Fatal(err)
	}
}

func (s aeSide) query(t *testing.T, ns, parent, kind string, minN int64) []string {
	t.Helper()
	ctx := s.ctx
	if ns != "" {
		var err error
		if ctx, err = appengine.Namespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	q := aeds.NewQuery(kind).Filter("N >=", minN).Order("N").KeysOnly()
	if parent != "" {
		q = q.Ancestor(aeds.NewKey(ctx, "Parent", parent, 0, nil))
	}
	keys, err := q.GetAll(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.StringID())
	}
	return names
}

func (s aeSide) allocate(t *testing.T, kind string, n int) []int64 {
	t.Helper()
	lo, hi, err := aeds.AllocateIDs(s.ctx, kind, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for id := lo; id <= hi; id++ {
		ids = append(ids, id)
	}
	return ids
}

func (s aeSide) putAuto(t *testing.T, kind string) int64 {
	t.Helper()
	k, err := aeds.Put(s.ctx, aeds.NewIncompleteKey(s.ctx, kind, nil), &numbered{})
	if err != nil {
		t.Fatal(err)
	}
	return k.IntID()
}

// TestCrossAPI: each operation done through one client and checked
// through the other, both ways, in the default namespace and in another
// one, with and without a parent.
func TestCrossAPI(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		sides := []side{cloudSide{tg.Cloud}, aeSide{tg.AE}}
		for _, pair := range [][2]side{{sides[0], sides[1]}, {sides[1], sides[0]}} {
			w, r := pair[0], pair[1]
			for _, loc := range []struct{ ns, parent string }{{"", ""}, {"other-ns", ""}, {"", "p1"}, {"ns2", "p2"}} {
				t.Run(w.name()+" to "+r.name()+"/ns="+loc.ns+",parent="+loc.parent, func(t *testing.T) {
					kind := "Cross" + loc.ns + loc.parent
					ns, parent := loc.ns, loc.parent
					// Insert.
					w.put(t, ns, parent, kind, "a", 1)
					if n, ok := r.get(t, ns, parent, kind, "a"); !ok || n != 1 {
						t.Fatalf("insert: read %d, %v", n, ok)
					}
					// Update.
					w.put(t, ns, parent, kind, "a", 2)
					if n, _ := r.get(t, ns, parent, kind, "a"); n != 2 {
						t.Fatalf("update: read %d", n)
					}
					// Write in a transaction.
					w.putInTx(t, ns, parent, kind, "b", 3)
					if n, ok := r.get(t, ns, parent, kind, "b"); !ok || n != 3 {
						t.Fatalf("transaction: read %d, %v", n, ok)
					}
					// Query what the other wrote.
					w.put(t, ns, parent, kind, "c", 4)
					if got := r.query(t, ns, parent, kind, 2); !equal(got, []string{"a", "b", "c"}) {
						t.Fatalf("query: %v", got)
					}
					// Delete.
					w.del(t, ns, parent, kind, "a")
					if _, ok := r.get(t, ns, parent, kind, "a"); ok {
						t.Fatal("delete: the entity is still there")
					}
					if got := r.query(t, ns, parent, kind, 0); !equal(got, []string{"b", "c"}) {
						t.Fatalf("query after delete: %v", got)
					}
					// The reader updates what the writer wrote; the writer sees it.
					r.put(t, ns, parent, kind, "c", 9)
					if n, _ := w.get(t, ns, parent, kind, "c"); n != 9 {
						t.Fatalf("update back: read %d", n)
					}
				})
			}
			// IDs: what one allocates, the other never hands out.
			t.Run(w.name()+" to "+r.name()+"/ids", func(t *testing.T) {
				taken := map[int64]bool{}
				for _, id := range w.allocate(t, "IDs", 20) {
					taken[id] = true
				}
				for _, id := range r.allocate(t, "IDs", 20) {
					if taken[id] {
						t.Fatalf("ID %d allocated by both clients", id)
					}
					taken[id] = true
				}
				for i := 0; i < 20; i++ {
					for _, s := range []side{r, w} {
						id := s.putAuto(t, "IDs")
						if taken[id] {
							t.Fatalf("%s's automatic ID %d was allocated before", s.name(), id)
						}
						taken[id] = true
					}
				}
			})
		}
	})
}

// equal reports whether a and b hold the same names in the same order.
func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
