package aelocal_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

type note struct{ Text string }

// A server with a DatastorePath keeps every acknowledged write in a file:
// a new server on the same file starts with them.
func ExampleOptions_datastorePath() {
	dir, _ := os.MkdirTemp("", "aelocal-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "datastore.db")

	srv, err := aelocal.NewServerOptions(&aelocal.Options{DatastorePath: path})
	if err != nil {
		panic(err)
	}
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	key := datastore.NewKey(ctx, "Note", "first", 0, nil)
	if _, err := datastore.Put(ctx, key, &note{"kept"}); err != nil {
		panic(err)
	}
	srv.Close() // or kill -9: the put above was on disk before it returned

	srv, err = aelocal.NewServerOptions(&aelocal.Options{DatastorePath: path})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx = appengine.NewContext(srv.NewRequest("GET", "/", nil))
	var n note
	err = datastore.Get(ctx, datastore.NewKey(ctx, "Note", "first", 0, nil), &n)
	fmt.Println(n.Text, err)
	// Output: kept <nil>
}
