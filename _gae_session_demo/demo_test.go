package main

// These tests run with "go test ./_gae_session_demo"; "./..." leaves this
// directory out (its name starts with "_"), so e2e/e2e_test.go runs them.

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
