package aelocal

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

func TestDatastoreKindProperties(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putPItems(t, ctx)
		pl := datastore.PropertyList{
			{Name: "M", Value: int64(1), Multiple: true},
			{Name: "M", Value: "s", Multiple: true},
			{Name: "N", Value: nil},
			{Name: "Hidden", Value: "x", NoIndex: true},
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "U", "u", 0, nil), &pl); err != nil {
			t.Fatal(err)
		}
		got, err := datastore.KindProperties(ctx, "P")
		if err != nil {
			t.Fatal(err)
		}
		// Indexed properties only, with the types of their values; a nil
		// key is a null value. BS is a ByteString: indexed, a string.
		want := map[string][]string{
			"A": {"INT64"}, "B": {"STRING"}, "Tags": {"STRING"}, "W": {"INT64"}, "F": {"DOUBLE"},
			"BS": {"STRING"}, "K": {"NULL", "REFERENCE"}, "G": {"POINT"}, "Bo": {"BOOLEAN"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("KindProperties(P) =\n %v\nwant %v", got, want)
		}
		got, err = datastore.KindProperties(ctx, "U")
		if want := map[string][]string{"M": {"INT64", "STRING"}, "N": {"NULL"}}; err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("KindProperties(U) = %v, %v; want %v", got, err, want)
		}
		if got, err := datastore.KindProperties(ctx, "None"); err != nil || len(got) != 0 {
			t.Fatalf("KindProperties(None) = %v, %v", got, err)
		}
		// Another namespace has its own.
		other, _ := appengine.Namespace(ctx, "other")
		if got, err := datastore.KindProperties(other, "P"); err != nil || len(got) != 0 {
			t.Fatalf("KindProperties in another namespace = %v, %v", got, err)
		}

		keys := func(q *datastore.Query) string {
			t.Helper()
			ks, err := q.KeysOnly().GetAll(ctx, nil)
			if err != nil {
				t.Fatalf("GetAll: %v", err)
			}
			var out []string
			for _, k := range ks {
				out = append(out, k.Parent().StringID()+"."+k.StringID())
			}
			return strings.Join(out, " ")
		}
		kindKey := func(kind string) *datastore.Key { return datastore.NewKey(ctx, "__kind__", kind, 0, nil) }
		propKey := func(kind, prop string) *datastore.Key {
			return datastore.NewKey(ctx, "__property__", prop, 0, kindKey(kind))
		}
		all := "P.A P.B P.BS P.Bo P.F P.G P.K P.Tags P.W U.M U.N"
		if got := keys(datastore.NewQuery("__property__")); got != all {
			t.Fatalf("all properties: %s", got)
		}
		if got := keys(datastore.NewQuery("__property__").Filter("__key__ >", propKey("P", "Tags"))); got != "P.W U.M U.N" {
			t.Fatalf("after P.Tags: %s", got)
		}
		if got := keys(datastore.NewQuery("__property__").Filter("__key__ <", kindKey("U"))); got != "P.A P.B P.BS P.Bo P.F P.G P.K P.Tags P.W" {
			t.Fatalf("before kind U: %s", got)
		}
		if got := keys(datastore.NewQuery("__property__").Ancestor(propKey("U", "N"))); got != "U.N" {
			t.Fatalf("one property: %s", got)
		}
		if got := keys(datastore.NewQuery("__property__").Offset(2).Limit(2)); got != "P.BS P.Bo" {
			t.Fatalf("offset and limit: %s", got)
		}

		for _, c := range []struct {
			q    *datastore.Query
			want string
		}{
			{datastore.NewQuery("__property__").Order("-__key__"), "Only ascending order on __key__ supported"},
			{datastore.NewQuery("__property__").Filter("property_representation =", "INT64"), "Only comparison filters on __key__ supported"},
			{datastore.NewQuery("__property__").Filter("__key__ >", datastore.NewKey(ctx, "X", "B", 0, nil)), "invalid Key for __property__ table"},
			{datastore.NewQuery("__property__").Ancestor(datastore.NewKey(ctx, "X", "B", 0, nil)), "invalid Key for __property__ table"},
			{datastore.NewQuery("__kind__").Ancestor(kindKey("P")), "ancestor queries on __kind__ not allowed"},
			{datastore.NewQuery("__kind__").Filter("__key__ >", datastore.NewKey(ctx, "X", "B", 0, nil)), "invalid Key for __kind__ table"},
			{datastore.NewQuery("__namespace__").Order("-__key__"), "Only ascending order on __key__ supported"},
		} {
			_, err := c.q.KeysOnly().GetAll(ctx, nil)
			wantAPIError(t, err, "BAD_REQUEST", c.want)
		}
		// Kinds and namespaces still answer as before.
		if kinds, err := datastore.Kinds(ctx); err != nil || strings.Join(kinds, ",") != "P,U" {
			t.Fatalf("Kinds = %v, %v", kinds, err)
		}
	})
}

// TestDatastoreKindPropertiesFollowWrites: the answer of a __property__
// query is kept between queries only while no write changes the
// namespace; every kind of write shows in the next answer.
func TestDatastoreKindPropertiesFollowWrites(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	props := func(want string) {
		t.Helper()
		got, err := datastore.KindProperties(ctx, "K")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for name, types := range got {
			out = append(out, name+":"+strings.Join(types, "+"))
		}
		slices.Sort(out)
		if s := strings.Join(out, " "); s != want {
			t.Fatalf("KindProperties(K) = %s, want %s", s, want)
		}
	}
	k1, k2 := datastore.NewKey(ctx, "K", "1", 0, nil), datastore.NewKey(ctx, "K", "2", 0, nil)
	put := func(k *datastore.Key, pl datastore.PropertyList) {
		t.Helper()
		if _, err := datastore.Put(ctx, k, &pl); err != nil {
			t.Fatal(err)
		}
	}
	put(k1, datastore.PropertyList{{Name: "A", Value: int64(1)}})
	props("A:INT64")
	props("A:INT64") // from the memo
	put(k2, datastore.PropertyList{{Name: "B", Value: "x"}})
	props("A:INT64 B:STRING")
	put(k1, datastore.PropertyList{{Name: "A", Value: 1.5}}) // a new type
	props("A:DOUBLE B:STRING")
	// Another kind's write changes the namespace too; K is unchanged.
	put(datastore.NewKey(ctx, "Other", "o", 0, nil), datastore.PropertyList{{Name: "C", Value: true}})
	props("A:DOUBLE B:STRING")
	if err := datastore.Delete(ctx, k2); err != nil {
		t.Fatal(err)
	}
	props("A:DOUBLE")
	err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		pl := datastore.PropertyList{{Name: "T", Value: int64(7)}}
		_, err := datastore.Put(tc, k2, &pl)
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	props("A:DOUBLE T:INT64")
	// A datastore loaded from a file answers from its own entities.
	var saved bytes.Buffer
	if err := s.SaveDatastore(&saved); err != nil {
		t.Fatal(err)
	}
	put(k1, datastore.PropertyList{{Name: "Z", Value: int64(1)}})
	props("T:INT64 Z:INT64")
	if err := s.LoadDatastore(&saved); err != nil {
		t.Fatal(err)
	}
	props("A:DOUBLE T:INT64")
}

func TestDatastorePropertyQueryInTransaction(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	putPItems(t, ctx)
	err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		_, err := datastore.NewQuery("__property__").Ancestor(datastore.NewKey(tc, "__kind__", "P", 0, nil)).KeysOnly().GetAll(tc, nil)
		return err
	}, nil)
	wantAPIError(t, err, "BAD_REQUEST", `transactional queries on "__property__" not allowed`)
}

func TestDatastoreReservedPropertyNames(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "T", "a", 0, nil)
		for _, name := range []string{"__x__", "____", "__key__", "__scatter__"} {
			for _, noIndex := range []bool{false, true} {
				_, err := datastore.Put(ctx, k, &datastore.PropertyList{{Name: name, Value: int64(1), NoIndex: noIndex}})
				wantAPIError(t, err, "BAD_REQUEST", "cannot store entity with reserved property name '"+name+"'")
			}
		}
		// A PutMulti with one such entity stores none.
		keys := []*datastore.Key{datastore.NewKey(ctx, "T", "ok", 0, nil), k}
		_, err := datastore.PutMulti(ctx, keys, []datastore.PropertyList{{{Name: "N", Value: int64(1)}}, {{Name: "__x__", Value: int64(1)}}})
		wantAPIError(t, err, "BAD_REQUEST", "reserved property name")
		if err := datastore.Get(ctx, keys[0], &datastore.PropertyList{}); err != datastore.ErrNoSuchEntity {
			t.Fatalf("the valid entity of the refused PutMulti: %v", err)
		}
		// Names that only start or end so are fine.
		ok := datastore.PropertyList{{Name: "__x", Value: int64(1)}, {Name: "x__", Value: int64(1)}, {Name: "___", Value: int64(1)}, {Name: "_x_", Value: int64(1)}}
		if _, err := datastore.Put(ctx, k, &ok); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMetadataQueryLetsWritesThrough checks that a metadata query holds
// the datastore's lock only to take its snapshot of the schema (the
// namespaces, kinds or single-property indexes): a Put made while it is
// evaluated goes through, and the query answers the schema as it was
// when it began; the next query sees the write.
func TestMetadataQueryLetsWritesThrough(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	type W struct{ N int64 }
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", "", 1, nil), &W{1}); err != nil {
		t.Fatal(err)
	}
	nsCtx, err := appengine.Namespace(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	type R struct{ M string }
	// Each query runs once with the hook, which writes what would
	// change its answer: a namespace, a kind, a property.
	writes := []func() error{
		func() error {
			_, err := datastore.Put(nsCtx, datastore.NewKey(nsCtx, "K", "", 1, nil), &W{1})
			return err
		},
		func() error { _, err := datastore.Put(ctx, datastore.NewKey(ctx, "L", "", 1, nil), &W{1}); return err },
		func() error {
			_, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", "", 2, nil), &R{"x"})
			return err
		},
	}
	queries := []func() (string, error){
		func() (string, error) { ns, err := datastore.Namespaces(ctx); return strings.Join(ns, ","), err },
		func() (string, error) { ks, err := datastore.Kinds(ctx); return strings.Join(ks, ","), err },
		func() (string, error) {
			ps, err := datastore.KindProperties(ctx, "K")
			var out []string
			for name, types := range ps {
				out = append(out, name+":"+strings.Join(types, "+"))
			}
			slices.Sort(out)
			return strings.Join(out, " "), err
		},
	}
	want := [][2]string{{"", ",other"}, {"K", "K,L"}, {"N:INT64", "M:STRING N:INT64"}}
	for i, query := range queries {
		reads := 0
		d.mu.Lock()
		d.planReadHook = func() {
			reads++
			if !d.mu.TryLock() {
				t.Error("a metadata query is evaluated with the datastore's lock held")
				return
			}
			d.mu.Unlock()
			if err := writes[i](); err != nil {
				t.Error(err)
			}
		}
		d.mu.Unlock()
		got, err := query()
		d.mu.Lock()
		d.planReadHook = nil
		d.mu.Unlock()
		if err != nil || reads != 1 || got != want[i][0] {
			t.Errorf("query %d: %q, %v after %d reads; want %q as before its write, 1 read", i, got, err, reads, want[i][0])
		}
		if got, err := query(); err != nil || got != want[i][1] {
			t.Errorf("query %d again: %q, %v; want %q", i, got, err, want[i][1])
		}
	}
}
