package aelocal

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// fakeTB records what RunT does with its test.
type fakeTB struct {
	cleanups []func()
	fatal    string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, _ ...any) { f.fatal = format }
func (f *fakeTB) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }

func TestRunTClosesAtCleanup(t *testing.T) {
	f := &fakeTB{}
	s := RunT(f)
	if f.fatal != "" || len(f.cleanups) != 1 {
		t.Fatalf("fatal %q, %d cleanups", f.fatal, len(f.cleanups))
	}
	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.cleanups[0]()
	if _, err := http.Get(s.URL()); err == nil {
		t.Fatal("the server still answers after its test's cleanup")
	}

	var ran bool
	t.Run("real", func(t *testing.T) {
		s := RunT(t)
		ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
		ran = memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")}) == nil
	})
	if !ran {
		t.Fatal("RunT's server did not serve")
	}
}

func TestMemcacheItem(t *testing.T) {
	s := RunT(t)
	ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
	nsCtx, _ := appengine.Namespace(ctx, "ns")
	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v"), Flags: 7, Expiration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := memcache.Set(nsCtx, &memcache.Item{Key: "k", Value: []byte("in ns")}); err != nil {
		t.Fatal(err)
	}
	s.ResetStats()
	it, ok := s.MemcacheItem("", "k")
	if !ok || string(it.Value) != "v" || it.Flags != 7 || it.Expiration <= 0 || it.Expiration > time.Minute {
		t.Fatalf("%+v %v", it, ok)
	}
	if it, ok := s.MemcacheItem("ns", "k"); !ok || string(it.Value) != "in ns" || it.Expiration != 0 {
		t.Fatalf("namespace: %+v %v", it, ok)
	}
	if _, ok := s.MemcacheItem("", "missing"); ok {
		t.Fatal("found a missing item")
	}
	if len(s.Stats()) != 0 {
		t.Fatalf("inspection made RPCs: %v", s.Stats())
	}
	s.FastForward(2 * time.Minute)
	if _, ok := s.MemcacheItem("", "k"); ok {
		t.Fatal("found an expired item")
	}
}

type inspected struct {
	Name string
	N    int64
	At   time.Time
	Ref  *datastore.Key
}

func TestEntities(t *testing.T) {
	s := RunT(t)
	ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
	nsCtx, _ := appengine.Namespace(ctx, "ns")
	at := time.Unix(1700000000, 0).UTC()
	parent := datastore.NewKey(ctx, "Kind", "b", 0, nil)
	for _, k := range []*datastore.Key{
		datastore.NewKey(ctx, "Kind", "c", 0, nil),
		parent,
		datastore.NewKey(ctx, "Kind", "", 5, parent),
		datastore.NewKey(ctx, "Other", "x", 0, nil),
		datastore.NewKey(nsCtx, "Kind", "in-ns", 0, nil),
	} {
		if _, err := datastore.Put(ctx, k, &inspected{Name: k.String(), N: 1, At: at, Ref: parent}); err != nil {
			t.Fatal(err)
		}
	}
	s.ResetStats()
	ents, err := s.Entities("", "Kind")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		var v inspected
		if err := datastore.LoadStruct(&v, e.Properties); err != nil {
			t.Fatal(err)
		}
		if v.Name != e.Key.String() || !v.At.Equal(at) || !v.Ref.Equal(parent) {
			t.Fatalf("%v: %+v", e.Key, v)
		}
		names = append(names, e.Key.String())
	}
	if got := strings.Join(names, " "); got != "/Kind,b /Kind,b/Kind,5 /Kind,c" {
		t.Fatalf("keys %s", got)
	}
	if ents, _ := s.Entities("ns", "Kind"); len(ents) != 1 || ents[0].Key.Namespace() != "ns" {
		t.Fatalf("namespace: %v", ents)
	}
	if ents, _ := s.Entities("", ""); len(ents) != 4 {
		t.Fatalf("every kind: %d entities", len(ents))
	}
	if ents, err := s.Entities("nothing", "Kind"); err != nil || len(ents) != 0 {
		t.Fatalf("empty namespace: %v %v", ents, err)
	}
	if len(s.Stats()) != 0 {
		t.Fatalf("inspection made RPCs: %v", s.Stats())
	}
}
