package aelocal

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
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
		// dev_appserver's shapes, the destination escaped as
		// urllib.parse.quote escapes it.
		want := s.URL() + "/_ah/login?continue=http%3A//localhost%3A8080/dest%3Fx%3D1"
		if u != want {
			t.Fatalf("LoginURL = %q, want %q", u, want)
		}
		u, err = user.LogoutURL(ctx, "https://other.example/a b?q=é&r=~_.-")
		if err != nil {
			t.Fatal(err)
		}
		if want := s.URL() + "/_ah/logout?continue=https%3A//other.example/a%20b%3Fq%3D%C3%A9%26r%3D~_.-"; u != want {
			t.Fatalf("LogoutURL = %q, want %q", u, want)
		}
		if u, _ := user.LoginURL(ctx, ""); !strings.HasSuffix(u, "?continue=http%3A//localhost%3A8080/") {
			t.Fatalf("LoginURL of an empty destination = %q", u)
		}
		// A continue URL that login URLs of the app carry survives the
		// round trip: /_ah/logout?continue=<a login URL>.
		login, _ := user.LoginURL(ctx, "/")
		logout, _ := user.LogoutURL(ctx, login)
		pu, err := url.Parse(logout)
		if err != nil || pu.Path != "/_ah/logout" || pu.Query().Get("continue") != login {
			t.Fatalf("LogoutURL(LoginURL) = %q, continue %q", logout, pu.Query().Get("continue"))
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

// whoami is an app that says who is signed in.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c := appengine.NewContext(r)
	if u := user.Current(c); u != nil {
		fmt.Fprintf(w, "%s admin=%v id=%s domain=%s", u.Email, user.IsAdmin(c), u.ID, u.AuthDomain)
		return
	}
	fmt.Fprint(w, "nobody")
})

// browserClient keeps cookies, as a browser does.
func browserClient(t *testing.T) (*http.Client, func(*http.Response, error) string) {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	return client, func(resp *http.Response, err error) string {
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
}

// formCSRF finds the CSRF token of the form on page that posts to action.
func formCSRF(t *testing.T, page, action string) string {
	t.Helper()
	m := regexp.MustCompile(`action="` + regexp.QuoteMeta(action) + `">\s*<input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form posting to %s on the page:\n%s", action, page)
	}
	return m[1]
}

// TestLoginPage follows LoginURL in a browser-like client: the page signs
// the user in, and the app, served through Middleware, sees the user the
// way aetest.Login would make it see one.
func TestLoginPage(t *testing.T) {
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
	client, body := browserClient(t)

	if got := body(client.Get(app.URL)); got != "nobody" {
		t.Fatalf("before login: %q", got)
	}
	loginURL, _ := user.LoginURL(ctx, "/after")
	page := body(client.Get(loginURL))
	if !strings.Contains(page, `<form method="post"`) || !strings.Contains(page, app.URL+"/after") {
		t.Fatalf("login page:\n%s", page)
	}
	loginToken := formCSRF(t, page, "/_ah/login")
	form := url.Values{"csrf": {loginToken}, "continue": {app.URL + "/after"}, "email": {"juliet@example.org"}, "admin": {"1"}, "action": {"login"}}
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

	// LogoutURL is dev_appserver's /_ah/logout. A GET of it only asks;
	// the form it shows signs out.
	logoutURL, _ := user.LogoutURL(ctx, "/")
	if !strings.HasPrefix(logoutURL, s.URL()+"/_ah/logout?continue=") {
		t.Fatalf("LogoutURL = %q", logoutURL)
	}
	page = body(client.Get(logoutURL))
	mustContain(t, page, "<h1>Log out</h1>", "You are signed in as <b>juliet@example.org (administrator)</b>")
	logoutToken := formCSRF(t, page, "/_ah/logout")
	if got := body(client.Get(app.URL)); !strings.HasPrefix(got, "juliet@") {
		t.Fatalf("a GET of the logout page signed out: %q", got)
	}
	// dev_appserver's other form of it, too.
	mustContain(t, body(client.Get(s.URL()+"/_ah/login?action=logout&continue=/")), "<h1>Log out</h1>")

	// Another site cannot post the forms, nor can a post without the
	// page's token.
	for _, c := range []struct {
		action string
		form   url.Values
		header http.Header
	}{
		{"/_ah/logout", url.Values{"csrf": {logoutToken}, "continue": {"/"}}, http.Header{"Origin": {"http://evil.example"}}},
		{"/_ah/logout", url.Values{"csrf": {logoutToken}, "continue": {"/"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"/_ah/logout", url.Values{"continue": {"/"}}, nil},
		{"/_ah/logout", url.Values{"csrf": {loginToken}, "continue": {"/"}}, nil},
		{"/_ah/login", url.Values{"action": {"logout"}, "continue": {"/"}}, nil},
		{"/_ah/login", url.Values{"csrf": {loginToken}, "action": {"logout"}}, http.Header{"Origin": {"http://evil.example"}}},
		{"/_ah/login", url.Values{"csrf": {s.console.token("/_ah/logout")}, "action": {"login"}, "email": {"mallory@example.org"}}, nil},
	} {
		req, _ := http.NewRequest("POST", s.URL()+c.action, strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range c.header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("POST %s %v %v: %v %v, want 403", c.action, c.form, c.header, resp.StatusCode, err)
		}
		resp.Body.Close()
		if got := body(client.Get(app.URL)); !strings.HasPrefix(got, "juliet@") {
			t.Fatalf("a refused POST changed the user: %q", got)
		}
	}

	form = url.Values{"csrf": {logoutToken}, "continue": {app.URL + "/"}}
	if got := body(client.PostForm(s.URL()+"/_ah/logout", form)); got != "nobody" {
		t.Fatalf("after logout: %q", got)
	}
	// dev_appserver's logout through the login form (action=logout) signs
	// out too, though the page no longer offers it.
	body(client.PostForm(s.URL()+"/_ah/login", url.Values{"csrf": {loginToken}, "continue": {app.URL}, "email": {"a@example.org"}, "action": {"login"}}))
	if got := body(client.PostForm(s.URL()+"/_ah/login", url.Values{"csrf": {loginToken}, "continue": {app.URL}, "action": {"logout"}})); got != "nobody" {
		t.Fatalf("after the login page's logout: %q", got)
	}

	for _, bad := range []url.Values{
		{"continue": {"javascript:alert(1)"}, "action": {"logout"}},
		{"continue": {"//evil.example/"}, "action": {"logout"}},
		{"continue": {"https://evil.example/"}, "action": {"logout"}},
		{"continue": {"/\\evil.example/"}, "action": {"logout"}},
		{"continue": {"/"}, "action": {"login"}, "email": {"not an email"}},
		{"continue": {"/"}, "action": {"other"}},
	} {
		bad.Set("csrf", loginToken)
		resp, err := client.PostForm(s.URL()+"/_ah/login", bad)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %v %v, want 400", bad, resp.StatusCode, err)
		}
	}
}
