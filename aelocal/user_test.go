package aelocal

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/aetest"
	"google.golang.org/appengine/v2/user"
)

func TestUserLoginLogoutURL(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		u, err := user.LoginURL(ctx, "/dest?x=1")
		if err != nil {
			t.Fatal(err)
		}
		want := s.URL() + "/_ah/login?continue=" + url.QueryEscape("http://localhost:8080/dest?x=1")
		if u != want {
			t.Fatalf("LoginURL = %q, want %q", u, want)
		}
		u, err = user.LogoutURL(ctx, "https://other.example/")
		if err != nil {
			t.Fatal(err)
		}
		if want := s.URL() + "/_ah/login?action=logout&continue=" + url.QueryEscape("https://other.example/"); u != want {
			t.Fatalf("LogoutURL = %q, want %q", u, want)
		}
		if u, _ := user.LoginURL(ctx, ""); !strings.HasSuffix(u, url.QueryEscape("http://localhost:8080/")) {
			t.Fatalf("LoginURL of an empty destination = %q", u)
		}
	})
}

func TestUserOAuth(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		u, err := user.CurrentOAuth(ctx, "https://www.googleapis.com/auth/userinfo.email")
		if err != nil {
			t.Fatal(err)
		}
		if u.Email != "example@example.com" || u.ID != "0" || u.AuthDomain != "gmail.com" || u.Admin || u.ClientID == "" {
			t.Fatalf("default OAuth user %+v", u)
		}
		if k, err := user.OAuthConsumerKey(ctx); err != nil || k != "example.com" {
			t.Fatalf("OAuthConsumerKey = %q, %v", k, err)
		}
		s.SetOAuthUser(&user.User{Email: "admin@example.com", ID: "42", AuthDomain: "example.com", Admin: true})
		if u, err := user.CurrentOAuth(ctx, ""); err != nil || u.Email != "admin@example.com" || !u.Admin || u.ID != "42" {
			t.Fatalf("set OAuth user: %+v, %v", u, err)
		}
		s.SetOAuthUser(nil)
		_, err = user.CurrentOAuth(ctx, "scope")
		wantAPIError(t, err, "OAUTH_INVALID_REQUEST", "")
		_, err = user.OAuthConsumerKey(ctx)
		wantAPIError(t, err, "OAUTH_INVALID_REQUEST", "")
	})
}

// TestLoginPage follows LoginURL in a browser-like client: the page signs
// the user in, and the app, served through Middleware, sees the user the
// way aetest.Login would make it see one.
func TestLoginPage(t *testing.T) {
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := appengine.NewContext(r)
		if u := user.Current(c); u != nil {
			fmt.Fprintf(w, "%s admin=%v id=%s domain=%s", u.Email, user.IsAdmin(c), u.ID, u.AuthDomain)
			return
		}
		fmt.Fprint(w, "nobody")
	})
	var s *Server
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Middleware(whoami).ServeHTTP(w, r)
	}))
	defer app.Close()
	s, err := NewServerOptions(&Options{AppURL: app.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := middlewareContext(t, s)

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	body := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return string(b)
	}
	if got := body(client.Get(app.URL)); got != "nobody" {
		t.Fatalf("before login: %q", got)
	}
	loginURL, _ := user.LoginURL(ctx, "/after")
	page := body(client.Get(loginURL))
	if !strings.Contains(page, `<form method="post"`) || !strings.Contains(page, app.URL+"/after") {
		t.Fatalf("login page:\n%s", page)
	}
	form := url.Values{"continue": {app.URL + "/after"}, "email": {"juliet@example.org"}, "admin": {"1"}, "action": {"login"}}
	got := body(client.PostForm(s.URL()+"/_ah/login", form))
	want := fmt.Sprintf("juliet@example.org admin=true id=%s domain=gmail.com", loginUserID("juliet@example.org"))
	if got != want {
		t.Fatalf("after login the app sees %q, want %q", got, want)
	}

	// aetest.Login on a request wins over the cookie.
	req, _ := http.NewRequest("GET", app.URL, nil)
	aetest.Login(&user.User{Email: "romeo@example.org"}, req)
	if got := body(client.Do(req)); !strings.HasPrefix(got, "romeo@example.org admin=false") {
		t.Fatalf("aetest.Login: %q", got)
	}

	// A GET never signs out; the logout page's form does.
	logoutURL, _ := user.LogoutURL(ctx, "/")
	if page := body(client.Get(logoutURL)); !strings.Contains(page, `value="logout"`) {
		t.Fatalf("logout page:\n%s", page)
	}
	if got := body(client.Get(app.URL)); !strings.HasPrefix(got, "juliet@") {
		t.Fatalf("a GET of the logout page signed out: %q", got)
	}

	// Another site cannot post the form.
	evil, _ := http.NewRequest("POST", s.URL()+"/_ah/login", strings.NewReader(url.Values{"action": {"logout"}, "continue": {"/"}}.Encode()))
	evil.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	evil.Header.Set("Origin", "http://evil.example")
	if resp, err := client.Do(evil); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %v %v", resp.StatusCode, err)
	}
	if got := body(client.Get(app.URL)); !strings.HasPrefix(got, "juliet@") {
		t.Fatalf("a cross-site POST signed out: %q", got)
	}

	form = url.Values{"continue": {app.URL + "/"}, "action": {"logout"}}
	if got := body(client.PostForm(s.URL()+"/_ah/login", form)); got != "nobody" {
		t.Fatalf("after logout: %q", got)
	}

	for _, bad := range []url.Values{
		{"continue": {"javascript:alert(1)"}, "action": {"logout"}},
		{"continue": {"//evil.example/"}, "action": {"logout"}},
		{"continue": {"/"}, "action": {"login"}, "email": {"not an email"}},
		{"continue": {"/"}, "action": {"other"}},
	} {
		resp, err := client.PostForm(s.URL()+"/_ah/login", bad)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %v %v, want 400", bad, resp.StatusCode, err)
		}
	}
}
