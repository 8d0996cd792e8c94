package aelocal_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/aetest"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// visits counts requests in memcache, as an App Engine app might.
func visits(w http.ResponseWriter, r *http.Request) {
	ctx := appengine.NewContext(r)
	n, err := memcache.Increment(ctx, "visits", 1, 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "visit %d", n)
}

// Testing a handler: Middleware gives each request an App Engine context
// served by the local server, and Stats shows the RPCs the handler made.
// In a test, aelocal.RunT(t) starts the server and closes it at the end.
func Example() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	h := srv.Middleware(http.HandlerFunc(visits))

	for i := 0; i < 2; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		fmt.Println(rec.Body.String())
	}
	fmt.Println("memcache.Increment calls:", srv.Stats()["memcache.Increment"])

	srv.FailNext("memcache", "Increment", 1)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println("with memcache failing:", rec.Code)
	// Output:
	// visit 1
	// visit 2
	// memcache.Increment calls: 2
	// with memcache failing: 500
}

// An unchanged app reaches the server over its HTTP bridge when API_HOST
// and API_PORT name it, as on App Engine; cmd/aelocal runs such a server
// for `go run` of an app.
func Example_bridge() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	host, port := srv.Addr()
	os.Setenv("API_HOST", host)
	os.Setenv("API_PORT", port)
	defer os.Unsetenv("API_HOST")
	defer os.Unsetenv("API_PORT")

	// What appengine.Main does for each request of a deployed app.
	app := appengine.Middleware(http.HandlerFunc(visits))
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Body.String())
	fmt.Println("served over HTTP:", srv.Stats()["memcache.Increment"])
	// Output:
	// visit 1
	// served over HTTP: 1
}

// An existing aetest suite runs unchanged with cmd/aelocal as its
// dev_appserver. Usually the variable is set on the command line, in the
// app's module (whose go.mod has the replace line; an @version would
// ignore it):
//
//	go install github.com/icza/gaesession/v2/cmd/aelocal
//	APPENGINE_DEV_APPSERVER_BINARY=$(go env GOPATH)/bin/aelocal go test ./...
func Example_aetest() {
	// In a test of the app (here set by hand; appengine v1.6.8 reads
	// APPENGINE_DEV_APPSERVER instead):
	os.Setenv("APPENGINE_DEV_APPSERVER_BINARY", "/home/me/go/bin/aelocal")

	ctx, done, err := aetest.NewContext() // starts one aelocal process
	if err != nil {
		panic(err)
	}
	defer done() // stops it
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", "k", 0, nil), &struct{ N int }{1}); err != nil {
		panic(err)
	}
}

// A test's server in one line, and what it stored, read without a client.
func ExampleRunT() {
	var t *testing.T // the test's

	srv := aelocal.RunT(t) // closed when the test ends
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	datastore.Put(ctx, datastore.NewKey(ctx, "Greeting", "hi", 0, nil), &struct{ Text string }{"hello"})

	ents, err := srv.Entities("", "Greeting")
	if err != nil || len(ents) != 1 {
		t.Fatalf("stored %v (%v)", ents, err)
	}
}

// Entities and MemcacheItem read what the app stored, without an RPC.
func ExampleServer_Entities() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	type greeting struct{ Text string }
	for _, name := range []string{"b", "a"} {
		datastore.Put(ctx, datastore.NewKey(ctx, "Greeting", name, 0, nil), &greeting{"hello " + name})
	}
	memcache.Set(ctx, &memcache.Item{Key: "last", Value: []byte("b")})

	ents, err := srv.Entities("", "Greeting")
	if err != nil {
		panic(err)
	}
	for _, e := range ents {
		var g greeting
		datastore.LoadStruct(&g, e.Properties)
		fmt.Println(e.Key, g.Text)
	}
	item, _ := srv.MemcacheItem("", "last")
	fmt.Printf("memcache: %s\n", item.Value)
	// Output:
	// /Greeting,a hello a
	// /Greeting,b hello b
	// memcache: b
}
