package gaesession_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

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
