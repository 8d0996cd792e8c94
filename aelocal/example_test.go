package aelocal_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
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
