package aelocal

import (
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestForgedLoginCookieSignsNobodyIn: a page on any local port can set
// the login cookie from script, so only a cookie this server signed makes
// the app see a user, through the front end and through Middleware alike.
func TestForgedLoginCookieSignsNobodyIn(t *testing.T) {
	_, s := echoBehindFront(t)
	other := newTestServer(t)
	valid := s.loginCookieValue("juliet@example.org", false)
	i := strings.LastIndexByte(valid, ':')
	sig := valid[i+1:]
	forged := map[string]string{
		"unsigned, as dev_appserver's":  "root@evil:True:1",
		"unsigned, the ID of the email": "juliet@example.org:True:" + loginUserID("juliet@example.org"),
		"made an administrator":         strings.Replace(valid, ":False:", ":True:", 1),
		"another email, same signature": "romeo@example.org:False:" + loginUserID("romeo@example.org") + ":" + sig,
		"signed by another server":      other.loginCookieValue("root@evil", true),
		"empty signature":               valid[:i+1],
		"signature only":                sig,
	}
	frontUser := func(value string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", s.FrontURL()+"/who", nil)
		req.AddCookie(&http.Cookie{Name: loginCookie, Value: value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.SplitN(string(b), "\n", 2)[0]
	}
	middlewareUser := func(value string) string {
		t.Helper()
		var got string
		req, _ := http.NewRequest("GET", "/who", nil)
		req.AddCookie(&http.Cookie{Name: loginCookie, Value: value})
		s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Header.Get("X-AppEngine-User-Email")
		})).ServeHTTP(httptest.NewRecorder(), req)
		return got
	}
	for name, value := range forged {
		if got := frontUser(value); got != "nobody" {
			t.Errorf("%s (%q) through the front end: the app saw %q", name, value, got)
		}
		if got := middlewareUser(value); got != "" {
			t.Errorf("%s (%q) through Middleware: the app saw %q", name, value, got)
		}
	}
	if got := frontUser(valid); got != "juliet@example.org admin=false" {
		t.Errorf("the server's own cookie through the front end: %q", got)
	}
	if got := middlewareUser(valid); got != "juliet@example.org" {
		t.Errorf("the server's own cookie through Middleware: %q", got)
	}
	// A forged cookie set beside a valid one (another path) hides nothing.
	req, _ := http.NewRequest("GET", s.FrontURL()+"/who", nil)
	req.Header.Set("Cookie", loginCookie+"=root@evil:True:1; "+loginCookie+"="+valid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "juliet@example.org admin=false\n") {
		t.Errorf("a forged cookie beside the valid one: the app got %s", b)
	}
}

// TestLoginCookieIsReadableAndSigned: the cookie the form sets reads
// email:True|False:user-id:signature.
func TestLoginCookieIsReadableAndSigned(t *testing.T) {
	_, s := echoBehindFront(t)
	form := url.Values{"csrf": {s.console.token("/_ah/login")}, "email": {"juliet@example.org"}, "admin": {"1"}, "action": {"login"}, "continue": {"/"}}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(s.FrontURL()+"/_ah/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var value string
	for _, c := range resp.Cookies() {
		if c.Name == loginCookie {
			value = c.Value
		}
	}
	parts := strings.Split(value, ":")
	if len(parts) != 4 || parts[0] != "juliet@example.org" || parts[1] != "True" || parts[2] != loginUserID("juliet@example.org") || len(parts[3]) != 43 {
		t.Fatalf("cookie %q, want juliet@example.org:True:%s:<signature>", value, loginUserID("juliet@example.org"))
	}
	// Addresses the cookie could not carry as they are are refused.
	for _, email := range []string{`"a:b"@example.org`, `"a b"@example.org`, `"a,b"@example.org`} {
		form.Set("email", email)
		resp, err := client.PostForm(s.FrontURL()+"/_ah/login", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
			t.Errorf("email %s: status %d, cookies %v; want 400 and none", email, resp.StatusCode, resp.Cookies())
		}
	}
}

// TestLoginContinueStaysOnTheApp: the login and logout pages send the
// browser on only to the app's own origins, and say where.
func TestLoginContinueStaysOnTheApp(t *testing.T) {
	app, s := echoBehindFront(t)
	front := s.FrontURL()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(action, cont string) *http.Response {
		t.Helper()
		form := url.Values{"csrf": {s.console.token(action)}, "email": {"juliet@example.org"}, "action": {"login"}, "continue": {cont}}
		resp, err := client.PostForm(front+action, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, cont := range []string{
		"/after", "/a?b=c#d",
		front + "/x", app.URL + "/y", s.URL() + "/z",
		"http://localhost:9999/w", "https://127.0.0.1/v", "http://[::1]:1/u",
	} {
		for _, action := range []string{"/_ah/login", "/_ah/logout"} {
			resp := post(action, cont)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != cont {
				t.Errorf("POST %s continue=%s: %d to %q", action, cont, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		page := getFront(t, front+"/_ah/login?continue="+url.QueryEscape(cont))
		mustContain(t, page, "Then you go to <code class=\"wrap\">"+template.HTMLEscapeString(cont)+"</code>")
	}
	for _, cont := range []string{
		"https://elsewhere.example/phish", "http://evil.example:" + strings.TrimPrefix(front, "http://127.0.0.1:") + "/",
		"//elsewhere.example/", "/\\elsewhere.example/", "javascript:alert(1)", "ftp://127.0.0.1/",
		"http://user@elsewhere.example/", "http://127.0.0.1.nip.io/",
	} {
		for _, action := range []string{"/_ah/login", "/_ah/logout"} {
			resp := post(action, cont)
			if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
				t.Errorf("POST %s continue=%s: %d %v, want 400 and no cookie", action, cont, resp.StatusCode, resp.Cookies())
			}
		}
		req, _ := http.NewRequest("GET", front+"/_ah/login?continue="+url.QueryEscape(cont), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(page, "<form") || !strings.Contains(page, "not this app") {
			t.Errorf("GET login page continue=%s: %d\n%s", cont, resp.StatusCode, page)
		}
	}
}

// TestLoginPagesLookLikeTheConsole: the login and logout pages carry the
// console's style and header, a way back to the app and to the console,
// and only the action that applies.
func TestLoginPagesLookLikeTheConsole(t *testing.T) {
	_, s := echoBehindFront(t)
	front := s.FrontURL()
	cont := front + "/after"
	q := "?continue=" + url.QueryEscape(cont)
	common := []string{":root { --fg:", `<a class="brand" href="` + s.URL() + `/">aelocal</a>`,
		`<a href="` + cont + `">Back to the app</a>`, `<a href="` + s.URL() + `/">Console</a>`}

	login := getFront(t, front+"/_ah/login"+q)
	mustContain(t, login, append(common, "<h1>Log in</h1>", "You are not signed in.", `value="login">Log in</button>`)...)
	mustNotContain(t, login, ">Log out</button>", "log out</a>")

	logout := getFront(t, front+"/_ah/logout"+q)
	mustContain(t, logout, append(common, "<h1>Log out</h1>", "There is nobody to log out.")...)
	mustNotContain(t, logout, "<button")

	signedIn := http.Header{"Cookie": {loginCookie + "=" + s.loginCookieValue("juliet@example.org", true)}}
	logout = getFront(t, front+"/_ah/logout"+q, signedIn)
	mustContain(t, logout, append(common, "You are signed in as <b>juliet@example.org (administrator)</b>", ">Log out</button>")...)
	mustNotContain(t, logout, "Log in</button>")

	login = getFront(t, front+"/_ah/login"+q, signedIn)
	mustContain(t, login, `value="login">Log in</button>`, `<a href="/_ah/logout`+q+`">log out</a>`)
	mustNotContain(t, login, ">Log out</button>")
}

// getFront GETs url with the headers h and returns the page, which must
// be answered with 200.
func getFront(t *testing.T, url string, h ...http.Header) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for _, hh := range h {
		for k, v := range hh {
			req.Header[k] = v
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, b)
	}
	return string(b)
}

func mustNotContain(t *testing.T, page string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(page, u) {
			t.Errorf("the page contains %q:\n%s", u, page)
		}
	}
}
