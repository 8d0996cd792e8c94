package main

// These tests run with "go test ./_gae_session_demo"; "./..." leaves this
// directory out (its name starts with "_"), so e2e/e2e_test.go runs them.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

func TestWithSameSiteLax(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"page", func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sessid", Value: "v", Path: "/", HttpOnly: true})
			w.Write([]byte("page"))
		}, []string{"sessid=v; Path=/; HttpOnly; SameSite=Lax"}},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sessid", Value: "", Path: "/", MaxAge: -1})
			http.Redirect(w, r, "/demo", http.StatusSeeOther)
		}, []string{"sessid=; Path=/; Max-Age=0; SameSite=Lax"}},
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1"})
		}, []string{"a=1; SameSite=Lax"}},
		{"several, one with its own SameSite", func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1"})
			http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", SameSite: http.SameSiteStrictMode})
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("x"))
		}, []string{"a=1; SameSite=Lax", "b=2; SameSite=Strict"}},
		{"no cookie", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("x"))
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			withSameSiteLax(tc.handler).ServeHTTP(rec, httptest.NewRequest("GET", "/demo", nil))
			got := rec.Result().Header["Set-Cookie"]
			if len(got) != len(tc.want) {
				t.Fatalf("Set-Cookie %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("Set-Cookie %q, want %q", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestHasSameSite(t *testing.T) {
	for c, want := range map[string]bool{
		"a=1":                          false,
		"a=1; SameSite=Lax":            true,
		"a=1; samesite=none; Secure":   true,
		"samesite=1":                   false, // a cookie named samesite
		"a=SameSite; Path=/":           false,
		"a=1; Path=/; SameSite":        true,
		"a=1;SameSite=Strict;HttpOnly": true,
	} {
		if got := hasSameSite(c); got != want {
			t.Errorf("hasSameSite(%q) = %v, want %v", c, got, want)
		}
	}
}

func TestRPCSummary(t *testing.T) {
	c := &rpcCounter{counts: map[string]int{}}
	if s := c.summary(); s.Text != "no RPC" || s.Data != "" {
		t.Errorf("none: %+v", s)
	}
	c.order, c.counts = []string{"memcache.Get"}, map[string]int{"memcache.Get": 1}
	if s := c.summary(); s.Text != "1 RPC: memcache.Get" || s.Data != "memcache.Get=1" {
		t.Errorf("one: %+v", s)
	}
	c.order = []string{"memcache.Get", "datastore_v3.Put"}
	c.counts = map[string]int{"memcache.Get": 2, "datastore_v3.Put": 1}
	if s := c.summary(); s.Text != "3 RPCs: memcache.Get ×2, datastore_v3.Put" || s.Data != "memcache.Get=2 datastore_v3.Put=1" {
		t.Errorf("three: %+v", s)
	}
}

func TestSameOrigin(t *testing.T) {
	for origin, want := range map[string]bool{
		"":                        true,
		"http://localhost:8080":   true,
		"http://evil.example":     false,
		"http://localhost:8081":   false,
		"null":                    false,
		"https://localhost:8080/": true,
	} {
		r := httptest.NewRequest("POST", "http://localhost:8080/demo", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := sameOrigin(r); got != want {
			t.Errorf("Origin %q: %v, want %v", origin, got, want)
		}
	}
}

func TestLocalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost:8080":         true,
		"LOCALHOST":              true,
		"localhost.:8080":        true,
		"app.localhost:8080":     true,
		"127.0.0.1:8080":         true,
		"127.0.0.2":              true,
		"[::1]:8080":             true,
		"[::ffff:127.0.0.1]:80":  true,
		"evil.example:8080":      false,
		"evil.example":           false,
		"localhost.evil.example": false,
		"127.0.0.1.nip.io:8080":  false,
		"10.0.0.1:8080":          false,
		"[::]:8080":              false,
		"0.0.0.0:8080":           false,
		"":                       false,
	} {
		if got := localHost(host, "127.0.0.1"); got != want {
			t.Errorf("localHost(%q) = %v, want %v", host, got, want)
		}
	}
	if !localHost("192.0.2.7:8080", "192.0.2.7") {
		t.Error("the address the demo listens on is refused")
	}
}

// Locally, a request addressed to another name (a page of another site
// whose name was made to resolve to 127.0.0.1) is refused before the
// handler runs; on App Engine the check is off.
func TestGuardedRefusesForeignHostLocally(t *testing.T) {
	defer func(saved bool) { env.onAppEngine = saved }(env.onAppEngine)
	for _, onAppEngine := range []bool{false, true} {
		env.onAppEngine = onAppEngine
		for host, local := range map[string]bool{"localhost:8080": true, "127.0.0.1:8080": true, "rebound.example:8080": false} {
			ran := false
			h := guarded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true }))
			r := httptest.NewRequest("GET", "/demo", nil)
			r.Host = host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if want := local || onAppEngine; ran != want {
				t.Errorf("on App Engine %v, Host %q: handler ran %v, want %v", onAppEngine, host, ran, want)
			}
			if !local && !onAppEngine && rec.Code != http.StatusMisdirectedRequest {
				t.Errorf("Host %q: status %d, want %d", host, rec.Code, http.StatusMisdirectedRequest)
			}
		}
	}
}

// demoVisit serves one request of the demo against srv, carrying cookies,
// and returns the answer.
func demoVisit(t *testing.T, srv *aelocal.Server, h http.HandlerFunc, method, target string, form url.Values, cookies []*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := srv.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h(rec, r)
	return rec
}

// The button that drops the session from Memcache drops that one item:
// another namespace's and another key's items stay (a flush would empty a
// Memcache other apps share). It is offered only to someone logged in,
// and the page after a logout says so.
func TestDropSessionFromMemcache(t *testing.T) {
	defer func(saved bool) { env.onAppEngine = saved }(env.onAppEngine)
	env.onAppEngine = false
	srv := aelocal.RunT(t)
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	nsCtx, _ := appengine.Namespace(ctx, "other-app")
	for _, c := range []context.Context{ctx, nsCtx} {
		if err := memcache.Set(c, &memcache.Item{Key: "not-the-demos", Value: []byte("keep me")}); err != nil {
			t.Fatal(err)
		}
	}

	page := demoVisit(t, srv, demoHandler, "GET", "/demo", nil, nil).Body.String()
	if strings.Contains(page, "/demo/flush") || strings.Contains(page, "logged out") {
		t.Fatalf("logged out, the page offers the button or speaks of a logout:\n%s", page)
	}
	login := demoVisit(t, srv, demoHandler, "POST", "/demo", url.Values{"UserName": {"ann"}, "Password": {"a"}, "Login": {"Login"}}, nil)
	cookies := login.Result().Cookies()
	if login.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", login.Code, cookies)
	}
	page = demoVisit(t, srv, demoHandler, "GET", "/demo", nil, cookies).Body.String()
	if !strings.Contains(page, `action="/demo/flush"`) || !strings.Contains(page, "Drop the session from Memcache") {
		t.Fatalf("logged in, no button:\n%s", page)
	}
	if _, ok := srv.MemcacheItem("", cookies[0].Value); !ok {
		t.Fatal("the session is not in memcache under its ID")
	}

	if rec := demoVisit(t, srv, flushHandler, "POST", "/demo/flush", url.Values{}, cookies); rec.Code != http.StatusSeeOther {
		t.Fatalf("drop: %d", rec.Code)
	}
	if _, ok := srv.MemcacheItem("", cookies[0].Value); ok {
		t.Fatal("the session is still in memcache")
	}
	for _, ns := range []string{"", "other-app"} {
		if it, ok := srv.MemcacheItem(ns, "not-the-demos"); !ok || string(it.Value) != "keep me" {
			t.Fatalf("namespace %q: another item was dropped too", ns)
		}
	}
	page = demoVisit(t, srv, demoHandler, "GET", "/demo", nil, cookies).Body.String()
	if !strings.Contains(page, `data-origin="datastore"`) {
		t.Fatalf("after the drop the session did not come from the datastore:\n%s", page)
	}

	logout := demoVisit(t, srv, demoHandler, "POST", "/demo", url.Values{"Logout": {"Logout"}}, cookies)
	if loc := logout.Header().Get("Location"); logout.Code != http.StatusSeeOther || loc != "/demo?loggedout=1" {
		t.Fatalf("logout: %d to %q", logout.Code, loc)
	}
	page = demoVisit(t, srv, demoHandler, "GET", "/demo?loggedout=1", nil, nil).Body.String()
	if !strings.Contains(page, `id="logged-out"`) || strings.Contains(page, "/demo/flush") {
		t.Fatalf("after logout:\n%s", page)
	}
	// Logged in, a link cannot make the page say logged out.
	again := demoVisit(t, srv, demoHandler, "POST", "/demo", url.Values{"UserName": {"ann"}, "Password": {"a"}, "Login": {"Login"}}, nil)
	page = demoVisit(t, srv, demoHandler, "GET", "/demo?loggedout=1", nil, again.Result().Cookies()).Body.String()
	if strings.Contains(page, `id="logged-out"`) || !strings.Contains(page, `id="user"`) {
		t.Fatalf("logged in again, /demo?loggedout=1 shows:\n%s", page)
	}
}
