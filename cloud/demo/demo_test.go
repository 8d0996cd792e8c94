package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestDemo drives the demo's handler as a browser would, with the
// embedded Redis and aelocal's Cloud Datastore API, and checks what each
// page says the request cost: one HMGET and one EVALSHA for a page view
// (a modified request: the visit counter) and the Cloud Datastore's
// Commit, and a Lookup once the session left Redis.
func TestDemo(t *testing.T) {
	for _, c := range []struct {
		cache, view string
		evict       bool
	}{
		{"redis",
			"2 Redis commands in 2 round trips: HMGET, EVALSHA; 1 Cloud Datastore RPC: Commit", true},
		// The transition tier reads and writes both caches.
		{"transition",
			"2 Redis commands in 2 round trips: HMGET, EVALSHA; 1 Cloud Datastore RPC: Commit; 2 App Engine RPCs: memcache.Get, memcache.Set", false},
	} {
		t.Run(c.cache, func(t *testing.T) {
			a, err := newApp(c.cache, "")
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			srv := httptest.NewServer(a.handler())
			defer srv.Close()
			jar, _ := cookiejar.New(nil)
			client := &http.Client{Jar: jar}
			page := func(method, path string, form url.Values) string {
				t.Helper()
				var resp *http.Response
				var err error
				if method == http.MethodPost {
					resp, err = client.PostForm(srv.URL+path, form)
				} else {
					resp, err = client.Get(srv.URL + path)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s %s: %s\n%s", method, path, resp.Status, b)
				}
				return string(b)
			}
			cost := regexp.MustCompile(`This request: ([^<]*)\.</p>`)
			costOf := func(p string) string {
				m := cost.FindStringSubmatch(p)
				if m == nil {
					t.Fatalf("no cost on the page:\n%s", p)
				}
				return m[1]
			}

			p := page(http.MethodGet, "/demo", nil)
			if !strings.Contains(p, `id="login"`) || costOf(p) != "no Redis command; no Cloud Datastore RPC" {
				t.Fatalf("first page:\n%s", p)
			}
			p = page(http.MethodPost, "/demo", url.Values{"UserName": {"gopher"}, "Login": {"Login"}})
			for i := 1; i <= 3; i++ {
				if !strings.Contains(p, `<b id="count">`+string(rune('0'+i))+`</b>`) || !strings.Contains(p, `<b id="user">gopher</b>`) {
					t.Fatalf("view %d:\n%s", i, p)
				}
				p = page(http.MethodGet, "/demo", nil)
			}
			// Once the pool's connection is open, a view costs the same
			// every time.
			if got := costOf(p); got != c.view {
				t.Errorf("a page view cost %q, want %q", got, c.view)
			}
			if c.evict {
				// Redis lost the session: the view finds it in the Datastore
				// (Lookup) and leaves the placeholder (EVALSHA of an add),
				// which the next view replaces with the Datastore's copy
				// (Lookup, then a compare-and-swap); from then on the
				// session is served from Redis again. The bundled store
				// does the same with Memcache.
				for i, want := range []string{
					"3 Redis commands in 3 round trips: HMGET ×2, EVALSHA; 2 Cloud Datastore RPCs: Lookup, Commit",
					"4 Redis commands in 4 round trips: HMGET ×2, EVALSHA ×2; 2 Cloud Datastore RPCs: Lookup, Commit",
					c.view,
				} {
					if i == 0 {
						p = page(http.MethodPost, "/demo/evict", url.Values{})
					} else {
						p = page(http.MethodGet, "/demo", nil)
					}
					origin := "datastore"
					if i == 2 {
						origin = "memcache"
					}
					if got := costOf(p); got != want || !strings.Contains(p, `id="origin">`+origin) {
						t.Errorf("view %d after the eviction cost %q, want %q, from %s:\n%s", i+1, got, want, origin, p)
					}
				}
			}
			p = page(http.MethodPost, "/demo", url.Values{"Logout": {"Logout"}})
			if !strings.Contains(p, `id="login"`) {
				t.Fatalf("after the logout:\n%s", p)
			}
		})
	}
}

// TestDemoRefusesOtherHosts: a request whose Host names another site (a
// page rebound to 127.0.0.1) is refused, and a login posted from another
// site changes nothing.
func TestDemoRefusesOtherHosts(t *testing.T) {
	a, err := newApp("redis", "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	h := a.handler()
	r := httptest.NewRequest(http.MethodGet, "http://evil.example/demo", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example: %d", w.Code)
	}
	r = httptest.NewRequest(http.MethodPost, "http://localhost/demo", strings.NewReader("UserName=x&Login=1"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://evil.example")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Errorf("a login posted from another site: %d, cookies %v", w.Code, w.Result().Cookies())
	}
}
