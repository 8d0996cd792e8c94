package aelocal_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// Catching a missing composite index before deploying: with
// RequireIndexes, a query index.yaml does not serve fails as it would in
// production, and the error gives the entry to add.
func ExampleOptions_requireIndexes() {
	dir, err := os.MkdirTemp("", "app")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	indexYAML := filepath.Join(dir, "index.yaml")
	if err := os.WriteFile(indexYAML, []byte("indexes:\n"), 0o644); err != nil {
		panic(err)
	}
	srv, err := aelocal.NewServerOptions(&aelocal.Options{IndexYAML: indexYAML, RequireIndexes: true})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))

	q := datastore.NewQuery("Task").Filter("Done =", false).Order("-Due")
	_, err = q.KeysOnly().GetAll(ctx, nil)
	msg, _, _ := strings.Cut(err.Error(), "(aelocal:")
	fmt.Print(msg)
	// Output:
	// API error 4 (datastore_v3: NEED_INDEX): no matching index found. recommended index is:
	// - kind: Task
	//   properties:
	//   - name: Done
	//   - name: Due
	//     direction: desc
}

// Without index.yaml, aelocal still records the composite indexes the
// queries need, as dev_appserver did.
func ExampleServer_IndexYAML() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))

	datastore.NewQuery("Task").Filter("Owner =", "ann").Order("-Due").KeysOnly().GetAll(ctx, nil)
	_, generated, _ := strings.Cut(srv.IndexYAML(), "from writing this file.\n")
	fmt.Print(generated)
	// Output:
	// - kind: Task
	//   properties:
	//   - name: Owner
	//   - name: Due
	//     direction: desc
}
