package aelocaltest

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	"google.golang.org/appengine/v2"
	aeds "google.golang.org/appengine/v2/datastore"
)

// Inner is an embedded entity (an entity value).
type Inner struct {
	A string
	B int64
}

// AllTypes has a property of every value type the Cloud client stores.
type AllTypes struct {
	Str     string
	Text    string `datastore:",noindex"`
	Blob    []byte
	Int     int64
	Float   float64
	Bool    bool
	Time    time.Time
	Key     *datastore.Key
	Geo     datastore.GeoPoint
	Inner   Inner
	InnerP  *Inner
	Strs    []string
	Ints    []int64
	Nil     *datastore.Key
	Empty   []string
	Flatten Inner `datastore:",flatten"`
}

func allTypes(k *datastore.Key) *AllTypes {
	return &AllTypes{
		Str:     "héllo",
		Text:    strings.Repeat("long text ", 300), // past the 1,500 bytes of an indexed string
		Blob:    []byte{0, 0xff, 1},
		Int:     -42,
		Float:   3.25,
		Bool:    true,
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC), // microseconds: what the datastore keeps
		Key:     k,
		Geo:     datastore.GeoPoint{Lat: 52.5, Lng: 13.4},
		Inner:   Inner{A: "a", B: 1},
		InnerP:  &Inner{A: "p", B: 2},
		Strs:    []string{"x", "y"},
		Ints:    []int64{1, 2, 3},
		Flatten: Inner{A: "f", B: 3},
	}
}

// TestValueTypesRoundTrip: every value type the Cloud client writes comes
// back unchanged, through Put, Get, GetMulti, a query and Delete.
func TestValueTypesRoundTrip(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		c := tg.Cloud
		parent := datastore.NameKey("Parent", "p", nil)
		parent.Namespace = "ns1"
		ref := datastore.IDKey("Ref", 7, parent)
		ref.Namespace = "ns1"
		k := datastore.NameKey("All", "one", parent)
		k.Namespace = "ns1"
		want := allTypes(ref)
		if _, err := c.Put(ctx, k, want); err != nil {
			t.Fatal(err)
		}
		var got AllTypes
		if err := c.Get(ctx, k, &got); err != nil {
			t.Fatal(err)
		}
		want.Empty = nil // the client loads an empty array as nil
		got.Empty = nil
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("got  %+v\nwant %+v", got, *want)
		}
		// Time precision: the nanoseconds below the microsecond are dropped.
		k2 := datastore.NameKey("All", "nanos", nil)
		ns := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
		if _, err := c.Put(ctx, k2, &struct{ T time.Time }{ns}); err != nil {
			t.Fatal(err)
		}
		var tt struct{ T time.Time }
		if err := c.Get(ctx, k2, &tt); err != nil || !tt.T.Equal(ns.Truncate(time.Microsecond)) {
			t.Fatalf("time %v (%v), want %v", tt.T, err, ns.Truncate(time.Microsecond))
		}
		// GetMulti with a missing key.
		dst := make([]AllTypes, 2)
		err := c.GetMulti(ctx, []*datastore.Key{k, datastore.NameKey("All", "missing", nil)}, dst)
		me, ok := err.(datastore.MultiError)
		if !ok || me[0] != nil || me[1] != datastore.ErrNoSuchEntity {
			t.Fatalf("GetMulti: %v", err)
		}
		// A query in the namespace with an ancestor.
		q := datastore.NewQuery("All").Namespace("ns1").Ancestor(parent).FilterField("Int", "=", -42)
		var res []AllTypes
		keys, err := c.GetAll(ctx, q, &res)
		if err != nil || len(keys) != 1 || !keys[0].Equal(k) {
			t.Fatalf("query: %v %v", keys, err)
		}
		if err := c.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, k, &got); err != datastore.ErrNoSuchEntity {
			t.Fatalf("after Delete: %v", err)
		}
	})
}

// TestValueTypesAcrossAPIs: what the Cloud client writes, appengine/v2
// reads with the same values, and the other way round, as production
// maps them (datastore_pbs.py).
func TestValueTypesAcrossAPIs(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, ae := context.Background(), tg.AE
		c := tg.Cloud
		when := time.Date(2025, 6, 7, 8, 9, 10, 111222000, time.UTC)

		// Cloud -> v2.
		type v1Side struct {
			S    string
			T    string `datastore:",noindex"`
			B    []byte `datastore:",noindex"`
			I    int64
			F    float64
			W    time.Time
			K    *datastore.Key
			G    datastore.GeoPoint
			L    []string
			Null *datastore.Key
		}
		type v2Side struct {
			S    string
			T    string `datastore:",noindex"`
			B    []byte `datastore:",noindex"`
			I    int64
			F    float64
			W    time.Time
			K    *aeds.Key
			G    appengine.GeoPoint
			L    []string
			Null *aeds.Key
		}
		ck := datastore.NameKey("X", "from-cloud", nil)
		if _, err := c.Put(ctx, ck, &v1Side{S: "s", T: strings.Repeat("t", 2000), B: []byte{1, 2}, I: 5, F: 0.5, W: when,
			K: datastore.IDKey("Y", 9, nil), G: datastore.GeoPoint{Lat: 1, Lng: -1}, L: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
		var v2 v2Side
		if err := aeds.Get(ae, aeds.NewKey(ae, "X", "from-cloud", 0, nil), &v2); err != nil {
			t.Fatal(err)
		}
		if v2.S != "s" || len(v2.T) != 2000 || string(v2.B) != "\x01\x02" || v2.I != 5 || v2.F != 0.5 || !v2.W.Equal(when) ||
			v2.K == nil || v2.K.Kind() != "Y" || v2.K.IntID() != 9 || v2.G != (appengine.GeoPoint{Lat: 1, Lng: -1}) ||
			!reflect.DeepEqual(v2.L, []string{"a", "b"}) || v2.Null != nil {
			t.Fatalf("appengine/v2 read %+v", v2)
		}

		// v2 -> Cloud.
		ak, err := aeds.Put(ae, aeds.NewIncompleteKey(ae, "X", nil), &v2Side{S: "s2", T: "text", B: []byte{3}, I: 6, F: 1.5, W: when,
			K: aeds.NewKey(ae, "Y", "", 10, nil), G: appengine.GeoPoint{Lat: 2, Lng: 3}, L: []string{"c"}})
		if err != nil {
			t.Fatal(err)
		}
		var v1 v1Side
		if err := c.Get(ctx, datastore.IDKey("X", ak.IntID(), nil), &v1); err != nil {
			t.Fatal(err)
		}
		if v1.S != "s2" || v1.T != "text" || string(v1.B) != "\x03" || v1.I != 6 || v1.F != 1.5 || !v1.W.Equal(when) ||
			v1.K == nil || v1.K.Kind != "Y" || v1.K.ID != 10 || v1.G != (datastore.GeoPoint{Lat: 2, Lng: 3}) || !reflect.DeepEqual(v1.L, []string{"c"}) {
			t.Fatalf("Cloud client read %+v", v1)
		}
	})
}
