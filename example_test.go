package gaesession_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// The classic use: one store per request, wrapped in a session manager that
// is closed at the end of the request. aelocal stands in for App Engine so
// that the example runs anywhere.
func Example() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		ctx := appengine.NewContext(r)
		sessmgr := session.NewCookieManager(gaesession.NewMemcacheStore(ctx))
		defer sessmgr.Close() // saves what changed, to Memcache and the Datastore

		sess := sessmgr.Get(r)
		if sess == nil {
			sess = session.NewSessionOptions(&session.SessOptions{
				Attrs: map[string]interface{}{"Count": 1},
			})
			sessmgr.Add(sess, w)
		} else {
			sess.SetAttr("Count", sess.Attr("Count").(int)+1)
		}
		fmt.Fprintf(w, "Count: %d", sess.Attr("Count"))
	}

	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	app := srv.Middleware(http.HandlerFunc(handler))

	var cookies []*http.Cookie
	for i := 0; i < 3; i++ {
		req := httptest.NewRequest("GET", "/", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		if c := rec.Result().Cookies(); len(c) > 0 {
			cookies = c
		}
		fmt.Println(rec.Body.String())
	}
	// Output:
	// Count: 1
	// Count: 2
	// Count: 3
}

// SaveError tells an app that a change was not stored, which Close (whose
// signature session.Store fixes) cannot return; the store logs it too. In
// the second request the Datastore fails every write, so the session lives
// in Memcache only.
func ExampleSaveError() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	handler := func(w http.ResponseWriter, r *http.Request) {
		store := gaesession.NewMemcacheStore(appengine.NewContext(r))
		sessmgr := session.NewCookieManager(store)
		sess := session.NewSession()
		sessmgr.Add(sess, w)
		sess.SetAttr("Visits", 1)
		sessmgr.Close()
		if err := gaesession.SaveError(store); err != nil {
			// The text names the session by its LogID, never by its ID.
			fmt.Println("not saved:", strings.Contains(err.Error(), gaesession.LogID(sess.ID())))
			return
		}
		fmt.Println("saved")
	}
	app := srv.Middleware(http.HandlerFunc(handler))

	app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	srv.FailNext("datastore_v3", "Put", 100)
	app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	// Output:
	// saved
	// not saved: true
}
