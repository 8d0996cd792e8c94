// Package v1suite is an app's aetest suite on appengine v1.6.8, which
// starts the program that APPENGINE_DEV_APPSERVER names.
package v1suite

import (
	"testing"

	"google.golang.org/appengine"
	"google.golang.org/appengine/aetest"
	"google.golang.org/appengine/datastore"
	"google.golang.org/appengine/memcache"
)

type greeting struct {
	Text string
}

func TestWithAetestV1(t *testing.T) {
	ctx, done, err := aetest.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer done()

	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if it, err := memcache.Get(ctx, "k"); err != nil || string(it.Value) != "v" {
		t.Fatalf("memcache: %v, %v", it, err)
	}
	key := datastore.NewKey(ctx, "Greeting", "hi", 0, nil)
	if _, err := datastore.Put(ctx, key, &greeting{"hello"}); err != nil {
		t.Fatal(err)
	}
	var got greeting
	if err := datastore.Get(ctx, key, &got); err != nil || got.Text != "hello" {
		t.Fatalf("datastore: %+v, %v", got, err)
	}
	if appengine.AppID(ctx) == "" {
		t.Error("no app ID")
	}
}
