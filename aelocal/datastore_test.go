package aelocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

type dsItem struct {
	Name  string
	N     int
	Tags  []string
	When  time.Time
	Blob  []byte
	Notes string `datastore:",noindex"`
	F     float64
	B     bool
	Ref   *datastore.Key
	Geo   appengine.GeoPoint
}

func wantAPIError(t *testing.T, err error, code string, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s containing %q", code, substr)
	}
	if !strings.Contains(err.Error(), code) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v, want %s containing %q", err, code, substr)
	}
}

func TestDatastorePutGetDelete(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
		parent := datastore.NewKey(ctx, "Parent", "p", 0, nil)
		k := datastore.NewKey(ctx, "Item", "a", 0, parent)
		in := dsItem{
			Name: "alpha", N: 7, Tags: []string{"x", "y"}, When: when,
			Blob: []byte{0, 1, 2, 255}, Notes: strings.Repeat("n", 5000), F: 2.5, B: true,
			Ref: parent, Geo: appengine.GeoPoint{Lat: 1.5, Lng: -2.25},
		}
		got, err := datastore.Put(ctx, k, &in)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(k) {
			t.Fatalf("Put returned key %v, want %v", got, k)
		}
		var out dsItem
		if err := datastore.Get(ctx, k, &out); err != nil {
			t.Fatal(err)
		}
		if !out.When.Equal(when) {
			t.Fatalf("When = %v, want %v", out.When, when)
		}
		out.When = when
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("got %+v\nwant %+v", out, in)
		}

		// Overwrite.
		in.N = 8
		if _, err := datastore.Put(ctx, k, &in); err != nil {
			t.Fatal(err)
		}
		out = dsItem{}
		if err := datastore.Get(ctx, k, &out); err != nil || out.N != 8 {
			t.Fatalf("after overwrite: N=%d err=%v", out.N, err)
		}

		if err := datastore.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := datastore.Get(ctx, k, &out); err != datastore.ErrNoSuchEntity {
			t.Fatalf("Get after Delete: %v, want ErrNoSuchEntity", err)
		}
		// Deleting what is not there is fine.
		if err := datastore.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDatastoreMulti(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		keys := []*datastore.Key{
			datastore.NewKey(ctx, "M", "", 1, nil),
			datastore.NewKey(ctx, "M", "", 2, nil),
			datastore.NewKey(ctx, "M", "three", 0, nil),
		}
		src := []dsItem{{N: 1}, {N: 2}, {N: 3}}
		if _, err := datastore.PutMulti(ctx, keys, src); err != nil {
			t.Fatal(err)
		}
		getKeys := []*datastore.Key{keys[2], datastore.NewKey(ctx, "M", "missing", 0, nil), keys[0]}
		dst := make([]dsItem, 3)
		err := datastore.GetMulti(ctx, getKeys, dst)
		var me appengine.MultiError
		if !errors.As(err, &me) || len(me) != 3 {
			t.Fatalf("GetMulti: %v, want a MultiError of 3", err)
		}
		if me[0] != nil || me[1] != datastore.ErrNoSuchEntity || me[2] != nil {
			t.Fatalf("MultiError = %v", me)
		}
		if dst[0].N != 3 || dst[2].N != 1 {
			t.Fatalf("dst = %+v", dst)
		}
		if err := datastore.DeleteMulti(ctx, keys[:2]); err != nil {
			t.Fatal(err)
		}
		dst = make([]dsItem, 3)
		err = datastore.GetMulti(ctx, keys, dst)
		if !errors.As(err, &me) || me[0] != datastore.ErrNoSuchEntity || me[1] != datastore.ErrNoSuchEntity || me[2] != nil {
			t.Fatalf("GetMulti after DeleteMulti: %v", err)
		}
	})
}

func TestDatastorePropertyList(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "PL", "x", 0, nil)
		in := datastore.PropertyList{
			{Name: "I", Value: int64(42)},
			{Name: "S", Value: "str"},
			{Name: "Multi", Value: "a", Multiple: true},
			{Name: "Multi", Value: "b", Multiple: true},
			{Name: "Raw", Value: []byte("raw"), NoIndex: true},
			{Name: "BS", Value: datastore.ByteString("bs")},
			{Name: "Nil", Value: nil},
			{Name: "F", Value: 1.25},
			{Name: "T", Value: time.Unix(1700000000, 5000).UTC()},
		}
		if _, err := datastore.Put(ctx, k, &in); err != nil {
			t.Fatal(err)
		}
		var out datastore.PropertyList
		if err := datastore.Get(ctx, k, &out); err != nil {
			t.Fatal(err)
		}
		if len(out) != len(in) {
			t.Fatalf("got %d properties, want %d: %+v", len(out), len(in), out)
		}
		byName := func(pl datastore.PropertyList) map[string][]any {
			m := map[string][]any{}
			for _, p := range pl {
				v := p.Value
				if tm, ok := v.(time.Time); ok {
					v = tm.UnixMicro()
				}
				m[p.Name] = append(m[p.Name], v)
			}
			return m
		}
		if a, b := byName(in), byName(out); !reflect.DeepEqual(a, b) {
			t.Fatalf("got %v, want %v", b, a)
		}
	})
}

func TestDatastoreIncompleteKeysAndAllocateIDs(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "P", "root", 0, nil)
		keys := []*datastore.Key{
			datastore.NewIncompleteKey(ctx, "Inc", nil),
			datastore.NewIncompleteKey(ctx, "Inc", nil),
			datastore.NewIncompleteKey(ctx, "Inc", parent),
		}
		got, err := datastore.PutMulti(ctx, keys, []dsItem{{N: 1}, {N: 2}, {N: 3}})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for i, k := range got {
			if k.Incomplete() || k.IntID() <= 0 || seen[k.IntID()] {
				t.Fatalf("key %d = %v: want a fresh ID", i, k)
			}
			seen[k.IntID()] = true
		}
		if !got[2].Parent().Equal(parent) {
			t.Fatalf("parent lost: %v", got[2])
		}
		var it dsItem
		if err := datastore.Get(ctx, got[2], &it); err != nil || it.N != 3 {
			t.Fatalf("Get %v: %+v %v", got[2], it, err)
		}

		low, high, err := datastore.AllocateIDs(ctx, "Inc", nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if high-low != 10 || low <= 0 {
			t.Fatalf("AllocateIDs = [%d, %d)", low, high)
		}
		for id := range seen {
			if id >= low && id < high {
				t.Fatalf("allocated range [%d,%d) holds used ID %d", low, high, id)
			}
		}
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil {
			t.Fatal(err)
		}
		if k.IntID() >= low && k.IntID() < high {
			t.Fatalf("automatic ID %d is in the allocated range [%d,%d)", k.IntID(), low, high)
		}
		// A range above the counter is free; one below it is contended.
		if err := datastore.AllocateIDRange(ctx, "Inc", nil, high+100, high+200); err != nil {
			t.Fatalf("AllocateIDRange: %v", err)
		}
		k, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil || k.IntID() <= high+200 {
			t.Fatalf("after AllocateIDRange: key %v, err %v", k, err)
		}
		if err := datastore.AllocateIDRange(ctx, "Inc", nil, 1, 2); err == nil {
			t.Fatal("AllocateIDRange over used IDs: no error")
		}
		// An explicit ID pushes automatic IDs past it.
		explicit := datastore.NewKey(ctx, "Inc", "", 1000000, nil)
		if _, err := datastore.Put(ctx, explicit, &it); err != nil {
			t.Fatal(err)
		}
		k, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil || k.IntID() <= 1000000 {
			t.Fatalf("after explicit ID: key %v, err %v", k, err)
		}
	})
}

type qItem struct {
	N    int
	S    string
	Tags []string
	Exp  time.Time
}

func TestDatastoreNamespaces(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		nsA, err := appengine.Namespace(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		nsB, _ := appengine.Namespace(ctx, "b")
		for i, c := range []context.Context{ctx, nsA, nsB} {
			k := datastore.NewKey(c, "K", "same", 0, nil)
			if _, err := datastore.Put(c, k, &qItem{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := datastore.Put(nsA, datastore.NewKey(nsA, "K", "onlyA", 0, nil), &qItem{N: 10}); err != nil {
			t.Fatal(err)
		}
		for i, c := range []context.Context{ctx, nsA, nsB} {
			var x qItem
			if err := datastore.Get(c, datastore.NewKey(c, "K", "same", 0, nil), &x); err != nil || x.N != i {
				t.Fatalf("namespace %d: %+v %v", i, x, err)
			}
		}
		counts := []int{1, 2, 1}
		for i, c := range []context.Context{ctx, nsA, nsB} {
			if n, err := datastore.NewQuery("K").Count(c); err != nil || n != counts[i] {
				t.Fatalf("namespace %d: Count %d, %v", i, n, err)
			}
		}
		var x qItem
		if err := datastore.Get(nsB, datastore.NewKey(nsB, "K", "onlyA", 0, nil), &x); err != datastore.ErrNoSuchEntity {
			t.Fatalf("cross-namespace Get: %v", err)
		}
		got, err := datastore.Namespaces(ctx)
		if err != nil || strings.Join(got, ",") != ",a,b" {
			t.Fatalf("Namespaces = %q, %v", got, err)
		}
	})
}

func TestDatastoreLimits(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		var x qItem
		ok := datastore.NewKey(ctx, "L", strings.Repeat("k", 1500), 0, nil)
		if _, err := datastore.Put(ctx, ok, &x); err != nil {
			t.Fatalf("1500-byte name: %v", err)
		}
		if err := datastore.Get(ctx, ok, &x); err != nil {
			t.Fatal(err)
		}
		_, err := datastore.Put(ctx, datastore.NewKey(ctx, "L", strings.Repeat("k", 1501), 0, nil), &x)
		wantAPIError(t, err, "BAD_REQUEST", "key name is 1501 bytes long; the limit is 1500 bytes")

		type big struct {
			B []byte
		}
		k := datastore.NewKey(ctx, "L", "big", 0, nil)
		if _, err := datastore.Put(ctx, k, &big{B: make([]byte, maxEntityBytes-200)}); err != nil {
			t.Fatalf("entity just under the limit: %v", err)
		}
		_, err = datastore.Put(ctx, k, &big{B: make([]byte, maxEntityBytes)})
		wantAPIError(t, err, "BAD_REQUEST", "is too big")
		var b big
		if err := datastore.Get(ctx, k, &b); err != nil || len(b.B) != maxEntityBytes-200 {
			t.Fatalf("the failed Put changed the entity: %d bytes, %v", len(b.B), err)
		}

		_, err = datastore.Put(ctx, datastore.NewKey(ctx, "L", "s", 0, nil), &qItem{S: strings.Repeat("s", 1501)})
		wantAPIError(t, err, "BAD_REQUEST", "the limit is 1500 bytes")

		keys := make([]*datastore.Key, 501)
		for i := range keys {
			keys[i] = datastore.NewKey(ctx, "L", "", int64(i+1), nil)
		}
		_, err = datastore.PutMulti(ctx, keys, make([]qItem, 501))
		wantAPIError(t, err, "BAD_REQUEST", "cannot write more than 500 entities")
		wantAPIError(t, datastore.DeleteMulti(ctx, keys), "BAD_REQUEST", "cannot delete more than 500")
		if _, err := datastore.PutMulti(ctx, keys[:500], make([]qItem, 500)); err != nil {
			t.Fatal(err)
		}
		keys = make([]*datastore.Key, 1001)
		for i := range keys {
			keys[i] = datastore.NewKey(ctx, "L", "", int64(i+1), nil)
		}
		wantAPIError(t, datastore.GetMulti(ctx, keys, make([]qItem, 1001)), "BAD_REQUEST", "cannot get more than 1000 keys")
		err = datastore.GetMulti(ctx, keys[:1000], make([]qItem, 1000))
		var me appengine.MultiError
		if !errors.As(err, &me) || me[0] != nil || me[999] != datastore.ErrNoSuchEntity {
			t.Fatalf("GetMulti of 1000: %v", err)
		}

		_, err = datastore.Put(ctx, datastore.NewKey(ctx, "__Reserved__", "x", 0, nil), &x)
		wantAPIError(t, err, "BAD_REQUEST", "reserved")
	})
}

// rawCall makes one datastore_v3 call with messages built by name.
func rawCall(ctx context.Context, method, reqName, respName string, fill func(pmsg)) (pmsg, error) {
	req, err := newMsg(reqName)
	if err != nil {
		panic(err)
	}
	fill(req)
	resp, err := newMsg(respName)
	if err != nil {
		panic(err)
	}
	return resp, appengine.APICall(ctx, "datastore_v3", method, protoV1(req), protoV1(resp))
}

func TestDatastoreOddRequests(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		app := datastore.NewKey(ctx, "K", "k", 0, nil).AppID()
		query := func(extra func(q pmsg)) error {
			_, err := rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
				q.Set("app", app)
				q.Set("kind", "X")
				extra(q)
			})
			return err
		}
		// IN of one value is an equality, as the stub normalizes it.
		if err := query(func(q pmsg) {
			f := q.AppendMsg("filter")
			f.Set("op", 6)
			p := f.AppendMsg("property")
			p.Set("name", "N")
			p.Set("multiple", false)
			p.Mutable("value").Set("int64Value", 1)
		}); err != nil {
			t.Fatalf("IN of one value: %v", err)
		}
		// An operator the enum does not define does not survive decoding
		// (proto2 keeps it as an unknown field), so the request fails to
		// parse.
		if err := query(func(q pmsg) {
			f := q.AppendMsg("filter")
			f.Set("op", 99)
			p := f.AppendMsg("property")
			p.Set("name", "N")
			p.Set("multiple", false)
			p.Mutable("value")
		}); err == nil {
			t.Fatal("operator 99: no error")
		}
		wantAPIError(t, query(func(q pmsg) { q.AppendMsg("filter").Set("op", 5) }), "BAD_REQUEST", "has 0 properties")
		wantAPIError(t, query(func(q pmsg) { q.Set("offset", -1) }), "BAD_REQUEST", "negative offset")
		wantAPIError(t, query(func(q pmsg) { q.Set("limit", -5) }), "BAD_REQUEST", "negative limit")
		wantAPIError(t, query(func(q pmsg) { q.Set("count", -5) }), "BAD_REQUEST", "negative count")
		wantAPIError(t, query(func(q pmsg) { q.Set("distinct", true) }), "BAD_REQUEST", "distinct")
		wantAPIError(t, query(func(q pmsg) { q.Set("search_query", "x") }), "BAD_REQUEST", "search")
		wantAPIError(t, query(func(q pmsg) { q.Mutable("ancestor").Set("app", app); q.Mutable("ancestor").Mutable("path") }), "BAD_REQUEST", "empty path")
		wantAPIError(t, query(func(q pmsg) {
			q.Mutable("compiled_cursor").Mutable("position").Set("start_key", "opaque")
		}), "BAD_REQUEST", "not made by aelocal")
		// Absurd but valid numbers are fine.
		if err := query(func(q pmsg) { q.Set("offset", 1<<31-1); q.Set("limit", 1<<31-1); q.Set("count", 1<<31-1) }); err != nil {
			t.Fatal(err)
		}

		// Keys with empty or incomplete paths.
		_, err := rawCall(ctx, "Get", "appengine.v2.GetRequest", "appengine.v2.GetResponse", func(r pmsg) {
			k := r.AppendMsg("key")
			k.Set("app", app)
			k.Mutable("path")
		})
		wantAPIError(t, err, "BAD_REQUEST", "empty path")
		_, err = rawCall(ctx, "Delete", "appengine.v2.DeleteRequest", "appengine.v2.DeleteResponse", func(r pmsg) {
			k := r.AppendMsg("key")
			k.Set("app", app)
			k.Mutable("path").AppendMsg("element").Set("type", "K")
		})
		wantAPIError(t, err, "BAD_REQUEST", "incomplete")
		_, err = rawCall(ctx, "Put", "appengine.v2.PutRequest", "appengine.v2.PutResponse", func(r pmsg) {
			e := r.AppendMsg("entity")
			k := e.Mutable("key")
			k.Set("app", app)
			el := k.Mutable("path").AppendMsg("element")
			el.Set("type", "K")
			el.Set("id", 5)
			el.Set("name", "both")
			e.Mutable("entity_group")
		})
		wantAPIError(t, err, "BAD_REQUEST", "both an ID and a name")

		_, err = rawCall(ctx, "Next", "appengine.v2.NextRequest", "appengine.v2.QueryResult", func(r pmsg) {
			r.Mutable("cursor").Set("cursor", uint64(123456789))
		})
		wantAPIError(t, err, "BAD_REQUEST", "unknown")
		_, err = rawCall(ctx, "Commit", "appengine.v2.Transaction", "appengine.v2.CommitResponse", func(r pmsg) {
			r.Set("handle", uint64(987654321))
			r.Set("app", app)
		})
		wantAPIError(t, err, "BAD_REQUEST", "unknown")
		_, err = rawCall(ctx, "AllocateIds", "appengine.v2.AllocateIdsRequest", "appengine.v2.AllocateIdsResponse", func(r pmsg) {
			k := r.Mutable("model_key")
			k.Set("app", app)
			k.Mutable("path").AppendMsg("element").Set("type", "K")
			r.Set("size", -1)
		})
		wantAPIError(t, err, "BAD_REQUEST", "size")

		// The server still works.
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "X", "ok", 0, nil), &qItem{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDatastoreFailNextAndStats(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "F", "x", 0, nil)
		s.FailNext("datastore_v3", "Put", 1)
		_, err := datastore.Put(ctx, k, &qItem{N: 1})
		wantAPIError(t, err, "INTERNAL_ERROR", "injected")
		if _, err := datastore.Put(ctx, k, &qItem{N: 2}); err != nil {
			t.Fatal(err)
		}
		if err := datastore.Get(ctx, k, &qItem{}); err != nil {
			t.Fatal(err)
		}
		putQItems(t, ctx, "F", 30, time.Now(), nil)
		if _, err := datastore.NewQuery("F").GetAll(ctx, &[]qItem{}); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st["datastore_v3.Put"] != 3 || st["datastore_v3.Get"] != 1 || st["datastore_v3.RunQuery"] != 1 || st["datastore_v3.Next"] < 1 {
			t.Fatalf("stats %v", st)
		}
	})
}

func TestDatastoreSaveLoad(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		nsA, _ := appengine.Namespace(ctx, "a")
		putQItems(t, ctx, "S", 25, time.Unix(1e9, 0), nil)
		putQItems(t, nsA, "S", 3, time.Unix(1e9, 0), nil)
		ik, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &qItem{N: 99, Tags: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := s.SaveDatastore(&buf); err != nil {
			t.Fatal(err)
		}
		saved := buf.Bytes()
		var again bytes.Buffer
		if err := s.SaveDatastore(&again); err != nil || !bytes.Equal(again.Bytes(), saved) {
			t.Fatalf("SaveDatastore is not deterministic (err %v)", err)
		}

		s2 := newTestServer(t)
		if err := s2.LoadDatastore(bytes.NewReader(saved)); err != nil {
			t.Fatal(err)
		}
		if err := s.LoadDatastore(strings.NewReader("garbage")); err == nil {
			t.Fatal("loading garbage: no error")
		}
		var buf2 bytes.Buffer
		if err := s2.SaveDatastore(&buf2); err != nil || !bytes.Equal(buf2.Bytes(), saved) {
			t.Fatalf("reloaded datastore saves differently (err %v)", err)
		}
		// Replace s's datastore with an empty one and load back, then
		// query through ctx.
		var empty bytes.Buffer
		if err := newServer().SaveDatastore(&empty); err != nil {
			t.Fatal(err)
		}
		if err := s.LoadDatastore(&empty); err != nil {
			t.Fatal(err)
		}
		if n, _ := datastore.NewQuery("S").Count(ctx); n != 0 {
			t.Fatalf("after loading an empty datastore: %d entities", n)
		}
		if err := s.LoadDatastore(bytes.NewReader(saved)); err != nil {
			t.Fatal(err)
		}
		if n, err := datastore.NewQuery("S").Count(ctx); err != nil || n != 26 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		if n, err := datastore.NewQuery("S").Count(nsA); err != nil || n != 3 {
			t.Fatalf("Count in namespace = %d, %v", n, err)
		}
		var x qItem
		if err := datastore.Get(ctx, ik, &x); err != nil || x.N != 99 {
			t.Fatalf("Get %v: %+v %v", ik, x, err)
		}
		// The loaded datastore gives the automatic ID that comes after
		// ik's: scattered IDs do not grow, so compare with the next one.
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &x)
		if c := int64(bits.Reverse64(uint64(ik.IntID())) >> scatterShift); err != nil || k.IntID() != scatteredID(c+1) {
			t.Fatalf("ID counter not restored: new key %v after %v (%v)", k, ik, err)
		}
	})
}

func TestDatastoreConcurrentUse(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				k := datastore.NewKey(ctx, "CC", fmt.Sprintf("g%d-%d", g, i), 0, nil)
				if _, err := datastore.Put(ctx, k, &qItem{N: i, Tags: []string{"a", "b"}}); err != nil {
					t.Error(err)
					return
				}
				var items []qItem
				if _, err := datastore.NewQuery("CC").Filter("N >=", i-2).Order("N").BatchSize(3).GetAll(ctx, &items); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if err := datastore.Delete(ctx, k); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	n, err := datastore.NewQuery("CC").Count(ctx)
	if err != nil || n != 8*24 {
		t.Fatalf("Count = %d, %v; want %d", n, err, 8*24)
	}
	var buf bytes.Buffer
	if err := s.SaveDatastore(&buf); err != nil {
		t.Fatal(err)
	}
}
