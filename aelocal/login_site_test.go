package aelocal

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/user"
)

// TestMiddlewareLoginOnlyFromAppSite: a browser sends the login cookie
// (SameSite=Lax) to every local port, so a page of another local server
// can post a form or fetch from an app behind Middleware with it. As
// behind the front end (fromAppSite), such a request reaches the app
// without the signed-in user; the app's own pages and top-level links keep
// it.
func TestMiddlewareLoginOnlyFromAppSite(t *testing.T) {
	s := newTestServer(t)
	cookie := &http.Cookie{Name: loginCookie, Value: s.loginCookieValue("admin@example.org", true)}
	var got *user.User
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = user.Current(appengine.NewContext(r))
	}))
	for _, c := range []struct {
		name, method string
		header       http.Header
		user         bool
	}{
		{"no Sec-Fetch (a test's own request)", "POST", nil, true},
		{"same-origin form", "POST", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://example.com"}}, true},
		{"link from another local port", "GET", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}, true},
		{"form posted from another local port", "POST", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}, "Origin": {"http://127.0.0.1:3000"}}, false},
		{"fetch from another local port", "GET", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"empty"}}, false},
		{"post from another origin, no Sec-Fetch", "POST", http.Header{"Origin": {"http://127.0.0.1:3000"}}, false},
	} {
		got = nil
		req := httptest.NewRequest(c.method, "http://example.com/act", nil)
		for k, v := range c.header {
			req.Header[k] = v
		}
		req.AddCookie(cookie)
		h.ServeHTTP(httptest.NewRecorder(), req)
		if (got != nil) != c.user {
			t.Errorf("%s: the app saw user %v, want a user: %v", c.name, got, c.user)
		}
	}
}
