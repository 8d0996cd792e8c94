package aelocal

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/taskqueue"
	"google.golang.org/appengine/v2/user"
)

// echoApp is an app run on its own, behind appengine.Middleware only, as
// with go run: it says who App Engine says is signed in, and every
// X-AppEngine-* header and the Host it got.
var echoApp = appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c := appengine.NewContext(r)
	who := "nobody"
	if u := user.Current(c); u != nil {
		who = fmt.Sprintf("%s admin=%v", u.Email, user.IsAdmin(c))
	}
	var hs []string
	for k, v := range r.Header {
		if strings.HasPrefix(k, "X-Appengine-") {
			hs = append(hs, k+"="+strings.Join(v, ","))
		}
	}
	sort.Strings(hs)
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s\nhost=%s remote=%s method=%s path=%s body=%s\n%s", who, r.Host, r.RemoteAddr, r.Method, r.URL.RequestURI(), body, strings.Join(hs, "\n"))
}))

func TestFrontEndOptions(t *testing.T) {
	for _, o := range []Options{
		{FrontAddr: "127.0.0.1:0"}, // no app
		{FrontAddr: "0.0.0.0:0", AppURL: "http://127.0.0.1:8080"},
		{FrontAddr: ":0", AppURL: "http://127.0.0.1:8080"},
		{FrontAddr: "192.168.1.10:0", AppURL: "http://127.0.0.1:8080"},
		{FrontAddr: "example.com:8081", AppURL: "http://127.0.0.1:8080"},
		{FrontAddr: "127.0.0.1", AppURL: "http://127.0.0.1:8080"},
	} {
		if s, err := NewServerOptions(&o); err == nil {
			s.Close()
			t.Errorf("%+v: the server started", o)
		}
	}
	// A port in use: the server does not start, and leaves nothing behind.
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	if s, err := NewServerOptions(&Options{FrontAddr: strings.TrimPrefix(busy.URL, "http://"), AppURL: "http://127.0.0.1:8080"}); err == nil {
		s.Close()
		t.Error("a front end on a port in use started")
	}
	for _, h := range []string{"localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"} {
		if !loopbackHost(h) {
			t.Errorf("%q is not loopback", h)
		}
	}
	for _, h := range []string{"", "example.com", "localhost.example.com", "10.0.0.1", "0.0.0.0", "::", "127.0.0.1.nip.io"} {
		if loopbackHost(h) {
			t.Errorf("%q is loopback", h)
		}
	}
}

// echoBehindFront starts echoApp on its own and a server with a front
// end before it; both stop when the test ends.
func echoBehindFront(t *testing.T) (app *httptest.Server, s *Server) {
	t.Helper()
	app = httptest.NewServer(echoApp)
	t.Cleanup(app.Close)
	s, err := NewServerOptions(&Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return app, s
}

func TestFrontEnd(t *testing.T) {
	app, s := echoBehindFront(t)
	front := s.FrontURL()
	if front == "" || front == s.URL() || front == app.URL {
		t.Fatalf("FrontURL = %q (server %s, app %s)", front, s.URL(), app.URL)
	}
	client, body := browserClient(t)
	// The console's home links to it.
	_, home := getPage(t, s, "/")
	mustContain(t, home, `id="front">Browse the app through its front end at <a href="`+front+`/">`)
	get := func(path string, h http.Header) string {
		t.Helper()
		req, _ := http.NewRequest("GET", front+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		return body(client.Do(req))
	}
	forged := http.Header{
		"X-AppEngine-User-Email":    {"mallory@example.org"},
		"X-Appengine-User-Is-Admin": {"1"},
		"X-Appengine-Cron":          {"true"},
		"x-appengine-queuename":     {"default"},
		"X-AppEngine-User-IP":       {"8.8.8.8"},
	}

	// Before login: nobody, whatever the request claims.
	// The request's log ID (logservice.go) differs each time.
	got := regexp.MustCompile(`=[0-9a-f]{24}\n`).ReplaceAllString(get("/page?x=1", forged), "=ID\n")
	frontHost := strings.TrimPrefix(front, "http://")
	want := "nobody\nhost=" + frontHost + " remote=127.0.0.1:80 method=GET path=/page?x=1 body=\nX-Appengine-Api-Ticket=ID\nX-Appengine-Country=ZZ\nX-Appengine-Request-Log-Id=ID\nX-Appengine-User-Ip=127.0.0.1"
	if got != want {
		t.Fatalf("the app got\n%s\nwant\n%s", got, want)
	}

	// LoginURL points at the front end's page, which signs in on the
	// app's origin.
	ctx := middlewareContext(t, s)
	loginURL, err := user.LoginURL(ctx, "/after")
	if err != nil {
		t.Fatal(err)
	}
	if want := front + "/_ah/login?continue=" + pyQuote(front+"/after"); loginURL != want {
		t.Fatalf("LoginURL = %q, want %q", loginURL, want)
	}
	page := body(client.Get(loginURL))
	form := url.Values{"csrf": {formCSRF(t, page, "/_ah/login")}, "continue": {front + "/after"}, "email": {"juliet@example.org"}, "admin": {"1"}, "action": {"login"}}
	got = body(client.PostForm(front+"/_ah/login", form))
	if !strings.HasPrefix(got, "juliet@example.org admin=true\n") || !strings.Contains(got, "path=/after") ||
		!strings.Contains(got, "X-Appengine-User-Email=juliet@example.org") || !strings.Contains(got, "X-Appengine-User-Id="+loginUserID("juliet@example.org")) {
		t.Fatalf("after login the app got\n%s", got)
	}
	// The user's own headers win over anything the request claims.
	if got := get("/", forged); !strings.HasPrefix(got, "juliet@example.org admin=true\n") || strings.Contains(got, "mallory") || strings.Contains(got, "Cron") || strings.Contains(got, "Queuename") || strings.Contains(got, "8.8.8.8") {
		t.Fatalf("forged headers reached the app:\n%s", got)
	}
	// A body goes through.
	if got := body(client.Post(front+"/save", "text/plain", strings.NewReader("payload"))); !strings.Contains(got, "method=POST path=/save body=payload") {
		t.Fatalf("a POST reached the app as\n%s", got)
	}

	// Logout, on the front end too.
	logoutURL, _ := user.LogoutURL(ctx, "/bye")
	if !strings.HasPrefix(logoutURL, front+"/_ah/logout?continue=") {
		t.Fatalf("LogoutURL = %q", logoutURL)
	}
	page = body(client.Get(logoutURL))
	got = body(client.PostForm(front+"/_ah/logout", url.Values{"csrf": {formCSRF(t, page, "/_ah/logout")}, "continue": {front + "/bye"}}))
	if !strings.HasPrefix(got, "nobody\n") || !strings.Contains(got, "path=/bye") {
		t.Fatalf("after logout the app got\n%s", got)
	}

	// A name that does not point at this machine is refused: a page whose
	// DNS name was rebound to 127.0.0.1 cannot use the front end.
	req, _ := http.NewRequest("GET", front+"/", nil)
	req.Host = "evil.example:" + strings.Split(frontHost, ":")[1]
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host evil.example: %d", resp.StatusCode)
	}
	req.Host = "localhost:" + strings.Split(frontHost, ":")[1]
	if got := body(http.DefaultClient.Do(req)); !strings.Contains(got, "host=localhost:") {
		t.Fatalf("Host localhost: %s", got)
	}

	// The app is down: a clear answer.
	app.Close()
	resp, err = http.Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "did not answer") || !strings.Contains(string(b), "Is it running?") {
		t.Fatalf("the app down: %d %s", resp.StatusCode, b)
	}

	// Close stops the front end.
	s.Close()
	if resp, err := http.Get(front + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("the front end answers after Close")
	}
}

// TestFrontEndWithholdsUserFromOtherSites: to a browser, every port of
// 127.0.0.1 is one site, so it sends the login cookie (SameSite=Lax) with a
// request that a page of another local server makes to the front end. On
// App Engine the app's origin is a site of its own and that request would
// carry no user; so the front end passes it on without one, except for a
// top-level navigation with a safe method, which Lax lets through.
func TestFrontEndWithholdsUserFromOtherSites(t *testing.T) {
	_, s := echoBehindFront(t)
	front := s.FrontURL()
	cookie := &http.Cookie{Name: loginCookie, Value: s.loginCookieValue("juliet@example.org", true)}
	for _, tc := range []struct {
		name, method string
		header       http.Header
		user         bool
	}{
		{"no browser headers (curl)", "POST", nil, true},
		{"same-origin fetch", "POST", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Sec-Fetch-Mode": {"cors"}, "Origin": {front}}, true},
		{"typed in the address bar", "GET", http.Header{"Sec-Fetch-Site": {"none"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}, true},
		{"link from another local port", "GET", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}, true},
		{"form posted from another local port", "POST", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}, "Origin": {"http://127.0.0.1:3000"}}, false},
		{"fetch from another local port", "GET", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"empty"}}, false},
		{"frame on another local port", "GET", http.Header{"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"iframe"}}, false},
		{"post from another origin, no Sec-Fetch", "POST", http.Header{"Origin": {"http://127.0.0.1:3000"}}, false},
		{"post from an opaque origin", "POST", http.Header{"Origin": {"null"}}, false},
	} {
		req, _ := http.NewRequest(tc.method, front+"/act", strings.NewReader("x=1"))
		for k, v := range tc.header {
			req.Header[k] = v
		}
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.HasPrefix(string(b), "juliet@example.org admin=true\n")
		if got != tc.user || (!tc.user && !strings.HasPrefix(string(b), "nobody\n")) {
			t.Errorf("%s: the app got\n%s", tc.name, b)
		}
	}
}

// TestCloseLeavesNoConnectionToApp: after Close, neither the front end nor
// the task dispatcher keeps an idle connection to the app open (with the
// goroutines that serve it).
func TestCloseLeavesNoConnectionToApp(t *testing.T) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	app.Config.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	app.Start()
	defer app.Close()
	s, err := NewServerOptions(&Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.FrontURL() + "/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := taskqueue.Add(middlewareContext(t, s), &taskqueue.Task{Path: "/work"}, ""); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); len(s.Tasks("")) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dispatcher did not run the task")
		}
	}
	s.Close()
	// Closing is asynchronous on the app's side: wait for it, generously,
	// but for less than the 90 s after which idle connections close anyway.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(open)
		mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the app are still open after Close", n)
		}
	}
}

// TestFrontEndBoundsConnections: the front end caps its connections and
// closes idle ones as the API server does.
func TestFrontEndBoundsConnections(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s, err := NewServerOptions(&Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0", maxConns: 2, idleTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimPrefix(s.FrontURL(), "http://")
	l := s.front.limiter
	var conns []net.Conn
	for i := 0; i < 6; i++ {
		// The login page is the front end's own, so the app is not asked.
		conns = append(conns, keepAliveAt(t, addr, "/_ah/login"))
		if n := l.open(); n > 2 {
			t.Fatalf("%d connections open to the front end, cap 2", n)
		}
	}
	// Every connection ends: the old ones made room, the others idled out.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection %d: read %v, want EOF (closed by the front end)", i, err)
		}
		c.Close()
	}
}
