// Package e2e_test runs the demo app end to end: cmd/aelocal and two
// instances of _gae_session_demo as separate processes, talking over the
// real App Engine service bridge, driven by an HTTP client with a cookie
// jar as a browser would.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/internal/proctest"
)

const (
	buildTimeout = 5 * time.Minute  // building both binaries
	startTimeout = 60 * time.Second // one process, until it answers
	stopTimeout  = 10 * time.Second // after SIGTERM, before the kill
	startRetries = 3                // port collisions tolerated per process
	appID        = "dev~e2e"
	sessCookie   = "sessid" // icza/session's default cookie name
)

func TestDemoTwoInstancesSharedAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes; skipped in -short mode")
	}

	bin := buildBinaries(t)
	api := startProcess(t, "aelocal", filepath.Join(bin, "aelocal"+exeSuffix()),
		func(port string) ([]string, []string) {
			return []string{"-addr", "127.0.0.1:" + port}, nil
		}, "/", "aelocal")
	apiEnv := []string{"API_HOST=127.0.0.1", "API_PORT=" + api.port}
	demo := filepath.Join(bin, "_gae_session_demo"+exeSuffix())
	newDemo := func(name string) *process {
		return startProcess(t, name, demo, func(port string) ([]string, []string) {
			return nil, append([]string{"PORT=" + port}, apiEnv...)
		}, "/demo", "gaesession demo")
	}
	inst1, inst2 := newDemo("demo-1"), newDemo("demo-2")
	url1, url2 := inst1.url+"/demo", inst2.url+"/demo"

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}

	t.Log("a first visit shows the login form")
	b.wantLoginForm(b.get(url1), "first visit")

	t.Log("a wrong password is refused and starts no session")
	body := b.post(url1, url.Values{"UserName": {"gopher"}, "Password": {"b"}, "Login": {"Login"}})
	b.wantLoginForm(body, "wrong password")
	if !strings.Contains(body, `id="invalid-login"`) {
		t.Fatalf("wrong password: no error message:\n%s", body)
	}
	if c := sessionCookie(jar, url1); c != nil {
		t.Fatalf("wrong password: a session cookie was set: %v", c)
	}

	t.Log("form values in a URL change nothing: no login, no logout by link")
	b.wantLoginForm(b.get(url1+"?UserName=gopher&Password=a&Login=Login"), "login by GET")
	if c := sessionCookie(jar, url1); c != nil {
		t.Fatalf("login by GET: a session cookie was set: %v", c)
	}

	t.Log("logging in on instance 1 starts a session there: 303 to the page, cookie SameSite=Lax")
	status, _, hdr := b.postNoRedirect(url1, url.Values{"UserName": {"gopher"}, "Password": {"a"}, "Login": {"Login"}})
	if status != http.StatusSeeOther || hdr.Get("Location") != "/demo" {
		t.Fatalf("login: status %d, Location %q; want 303 to /demo", status, hdr.Get("Location"))
	}
	wantCookieAttrs(t, "login", hdr)
	cookie := sessionCookie(jar, url1)
	if cookie == nil {
		t.Fatal("login: no session cookie in the jar")
	}
	body = b.get(url1)
	b.wantSession(body, "the page after login", 1, "memcache", inst1)
	wantRPCs(t, "a page view (a modified request)", body, "memcache.Get=1 datastore_v3.Put=1 memcache.Set=1")
	if !strings.Contains(body, "visited this page <b id=\"count\">1</b> time.") {
		t.Fatalf("\"1 time\", not \"1 times\":\n%s", body)
	}

	t.Log("instance 2 finds the session in memcache, and counts each visit")
	for n := 2; n <= 4; n++ {
		b.wantSession(b.get(url2), fmt.Sprintf("visit %d on instance 2", n), n, "memcache", inst2)
	}
	body = b.get(url2 + "?Logout=1")
	b.wantSession(body, "GET with Logout=1", 5, "memcache", inst2)
	if !strings.Contains(body, "visited this page <b id=\"count\">5</b> times.") {
		t.Fatalf("\"5 times\":\n%s", body)
	}

	t.Log("a form posted from another site is refused")
	req, _ := http.NewRequest(http.MethodPost, url1, strings.NewReader("Logout=Logout"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if status, _, _ := b.do(req); status != http.StatusForbidden {
		t.Fatalf("cross-site POST: status %d, want 403", status)
	}

	t.Log("with memcache emptied, the session comes back from the datastore")
	// The flush answers with a redirect to /demo, which the client follows.
	b.wantSession(b.post(inst2.url+"/demo/flush", nil), "first visit after the flush", 6, "datastore", inst2)
	// The first visit left a placeholder in memcache (no add writes a
	// session copy; see tombstone.go): the second reads the datastore
	// again and puts the copy back, the third finds it in memcache.
	b.wantSession(b.get(url1), "second visit after the flush", 7, "datastore", inst1)
	b.wantSession(b.get(url2), "third visit after the flush", 8, "memcache", inst2)

	t.Log("logging out on instance 1 ends the session on both instances")
	status, _, hdr = b.postNoRedirect(url1, url.Values{"Logout": {"Logout"}})
	if status != http.StatusSeeOther {
		t.Fatalf("logout: status %d, want 303", status)
	}
	wantCookieAttrs(t, "logout", hdr)
	if c := sessionCookie(jar, url1); c != nil {
		t.Fatalf("logout: the session cookie is still in the jar: %v", c)
	}
	b.wantLoginForm(b.get(url2), "instance 2 after logout")
	// The server must have forgotten the session too, not only the browser:
	// present the old cookie again, before and after emptying memcache
	// (which leaves only the datastore to find it in).
	stale := &browser{t: t, c: &http.Client{Timeout: 30 * time.Second}, cookie: cookie}
	for _, u := range []string{url1, url2} {
		body := stale.get(u)
		stale.wantLoginForm(body, "old cookie after logout at "+u)
		wantRPCs(t, "old cookie after logout", body, "memcache.Get=1")
	}
	stale.post(inst1.url+"/demo/flush", nil)
	for _, u := range []string{url1, url2} {
		stale.wantLoginForm(stale.get(u), "old cookie after logout and flush at "+u)
	}

	t.Log("the purge serves App Engine cron and task queue requests only")
	purge := inst1.url + "/demo/purge"
	if status, body := b.purge(purge, nil); status != http.StatusForbidden {
		t.Fatalf("purge without cron header: status %d, want 403; body:\n%s", status, body)
	}
	for _, h := range []http.Header{
		{"X-Appengine-Cron": {"true"}},
		{"X-Appengine-Queuename": {"default"}},
	} {
		status, body := b.purge(purge, h)
		if status != http.StatusOK {
			t.Fatalf("purge with %v: status %d, want 200; body:\n%s", h, status, body)
		}
		var res struct {
			Completed *bool `json:"completed"`
		}
		if err := json.Unmarshal([]byte(body), &res); err != nil || res.Completed == nil || !*res.Completed {
			t.Fatalf("purge with %v: want JSON with \"completed\":true, got %q (%v)", h, body, err)
		}
	}
}

// The page serves people on phones (viewport), wraps long user names, and
// carries headers against sniffing and framing.
func TestDemoPageDetails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo; skipped in -short mode")
	}
	bin := buildBinaries(t)
	demo := startProcess(t, "demo", filepath.Join(bin, "_gae_session_demo"+exeSuffix()),
		func(port string) ([]string, []string) { return nil, []string{"PORT=" + port} }, "/demo", "gaesession demo")
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	u := demo.url + "/demo"

	req, _ := http.NewRequest(http.MethodGet, u, nil)
	_, body, hdr := b.do(req)
	for k, want := range map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "frame-ancestors 'none'",
		"Content-Type":            "text/html; charset=utf-8",
	} {
		if !strings.Contains(hdr.Get(k), want) {
			t.Errorf("%s: %q, want it to contain %q", k, hdr.Get(k), want)
		}
	}
	for _, want := range []string{`<meta name="viewport" content="width=device-width, initial-scale=1">`, "overflow-wrap: anywhere"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	wantRPCs(t, "a visit without a cookie", body, "")

	long := strings.Repeat("W", 100)
	body = b.post(u, url.Values{"UserName": {long}, "Password": {"a"}, "Login": {"Login"}})
	if !strings.Contains(body, `<b id="user">`+long+`</b>`) {
		t.Fatalf("a 100-character name: page:\n%s", body)
	}
	body = b.post(u, url.Values{"UserName": {long + "W"}, "Password": {"a"}, "Login": {"Login"}})
	if !strings.Contains(body, `id="invalid-login"`) {
		t.Fatalf("a 101-character name is refused: page:\n%s", body)
	}

	// DNS rebinding: a page of another site whose name now resolves to
	// 127.0.0.1 sends its own name as Host. The demo, running locally,
	// refuses it, for pages and forms alike; localhost and the loopback
	// address it listens on are served.
	for _, host := range []string{"rebound.example:" + demo.port, "rebound.example"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			req, _ = http.NewRequest(method, u, strings.NewReader(url.Values{"Logout": {"Logout"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Host = host
			if status, body, _ := b.do(req); status != http.StatusMisdirectedRequest {
				t.Errorf("%s with Host %q: status %d, want %d; body:\n%s", method, host, status, http.StatusMisdirectedRequest, body)
			}
		}
	}
	for _, host := range []string{"localhost:" + demo.port, "127.0.0.1:" + demo.port} {
		req, _ = http.NewRequest(http.MethodGet, u, nil)
		req.Host = host
		if status, _, _ := b.do(req); status != http.StatusOK {
			t.Errorf("GET with Host %q: status %d, want 200", host, status)
		}
	}
}

// The demo's own unit tests (the SameSite wrapper, the RPC summary): the
// "./..." pattern leaves out directories whose name starts with "_", so
// they run from here.
func TestDemoUnitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test on the demo; skipped in -short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "./_gae_session_demo")
	cmd.Dir = moduleRoot(ctx, t, goBin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test ./_gae_session_demo: %v\n%s", err, out)
	}
}

// wantCookieAttrs checks the session cookie a response sets.
func wantCookieAttrs(t *testing.T, what string, hdr http.Header) {
	t.Helper()
	for _, c := range hdr["Set-Cookie"] {
		if strings.HasPrefix(c, sessCookie+"=") {
			if !strings.Contains(c, "; SameSite=Lax") || !strings.Contains(c, "; HttpOnly") {
				t.Fatalf("%s: session cookie %q, want HttpOnly and SameSite=Lax", what, c)
			}
			return
		}
	}
	t.Fatalf("%s: no session cookie set: %q", what, hdr["Set-Cookie"])
}

var rpcsRE = regexp.MustCompile(`id="rpcs" data-rpcs="([^"]*)"`)

// wantRPCs checks the RPCs the page says its request made.
func wantRPCs(t *testing.T, what, body, want string) {
	t.Helper()
	m := rpcsRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s: the page shows no RPC count:\n%s", what, body)
	}
	if m[1] != want {
		t.Fatalf("%s: RPCs %q, want %q", what, m[1], want)
	}
}

// browser makes the requests of one user and checks the pages.
type browser struct {
	t      *testing.T
	c      *http.Client
	cookie *http.Cookie // sent with every request if set (a client without a jar)
}

func (b *browser) do(req *http.Request) (status int, body string, hdr http.Header) {
	b.t.Helper()
	if b.cookie != nil {
		req.AddCookie(&http.Cookie{Name: b.cookie.Name, Value: b.cookie.Value})
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, string(data), resp.Header
}

// page requests a page that must answer 200.
func (b *browser) page(req *http.Request) string {
	b.t.Helper()
	status, body, _ := b.do(req)
	if status != http.StatusOK {
		b.t.Fatalf("%s %s: status %d; body:\n%s", req.Method, req.URL, status, body)
	}
	return body
}

func (b *browser) get(u string) string {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.page(req)
}

func (b *browser) post(u string, form url.Values) string {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.page(req)
}

// postNoRedirect posts form to u and returns the response itself, not the
// page a redirect leads to; cookies it sets still reach the jar.
func (b *browser) postNoRedirect(u string, form url.Values) (int, string, http.Header) {
	b.t.Helper()
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	saved := b.c
	b.c = &c
	defer func() { b.c = saved }()
	return b.do(req)
}

// purge sends GET u with the headers h and returns the status and body; a
// 200 must be JSON.
func (b *browser) purge(u string, h http.Header) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	status, body, hdr := b.do(req)
	if ct := hdr.Get("Content-Type"); status == http.StatusOK && !strings.HasPrefix(ct, "application/json") {
		b.t.Fatalf("purge: Content-Type %q, want application/json", ct)
	}
	return status, body
}

var (
	userRE   = regexp.MustCompile(`<b id="user">([^<]*)</b>`)
	countRE  = regexp.MustCompile(`<b id="count">(\d+)</b>`)
	originRE = regexp.MustCompile(`data-origin="([^"]*)"`)
)

// wantSession checks that body shows gopher's session with the given visit
// count, loaded from origin, served by inst.
func (b *browser) wantSession(body, what string, count int, origin string, inst *process) {
	b.t.Helper()
	user, n, from := submatch(userRE, body), submatch(countRE, body), submatch(originRE, body)
	if user != "gopher" || n != strconv.Itoa(count) || from != origin {
		b.t.Fatalf("%s: got user %q, count %q, loaded from %q; want \"gopher\", %d, %q; page:\n%s",
			what, user, n, from, count, origin, body)
	}
	if served := "on port " + inst.port + "."; !strings.Contains(body, served) {
		b.t.Fatalf("%s: page not served by %s (%q missing):\n%s", what, inst.name, served, body)
	}
	if strings.Contains(body, `name="Login"`) {
		b.t.Fatalf("%s: login form shown with a session:\n%s", what, body)
	}
}

// wantLoginForm checks that body shows no session and offers the login form.
func (b *browser) wantLoginForm(body, what string) {
	b.t.Helper()
	if !strings.Contains(body, `name="Login"`) || userRE.MatchString(body) || countRE.MatchString(body) {
		b.t.Fatalf("%s: want the login form and no session; page:\n%s", what, body)
	}
}

func submatch(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

func sessionCookie(jar http.CookieJar, rawURL string) *http.Cookie {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	for _, c := range jar.Cookies(u) {
		if c.Name == sessCookie {
			return c
		}
	}
	return nil
}

// buildBinaries builds cmd/aelocal and the demo into a temporary directory
// and returns it.
func buildBinaries(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binaries: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	root := moduleRoot(ctx, t, goBin)
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator),
		"./cmd/aelocal", "./_gae_session_demo")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", root, err, out)
	}
	return dir
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(ctx context.Context, t *testing.T, goBin string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: not inside a module (%q)", gomod)
	}
	return filepath.Dir(gomod)
}

func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// process is a child process serving HTTP on 127.0.0.1:port.
type process struct {
	name, port, url string
	cmd             *exec.Cmd
	out             *proctest.LockedBuffer
	done            chan struct{} // closed when the process has exited
	waitErr         error         // valid once done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM first, a kill if it does not exit in time.
func (p *process) stop() {
	if p.exited() {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// startProcess starts bin on a free loopback port and waits until GET
// readyPath answers 200 with a body containing marker. argsEnv gives the
// arguments and extra environment for a port. A process that exits before
// it is ready (say, because another process took the port in between) is
// started again on another port, up to startRetries times.
func startProcess(t *testing.T, name, bin string, argsEnv func(port string) (args, env []string), readyPath, marker string) *process {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= startRetries; attempt++ {
		port := freePort(t)
		args, env := argsEnv(port)
		p := &process{
			name: name,
			port: port,
			url:  "http://127.0.0.1:" + port,
			out:  &proctest.LockedBuffer{},
			done: make(chan struct{}),
		}
		p.cmd = exec.Command(bin, args...)
		p.cmd.Env = append(childEnv(), env...)
		p.cmd.Stdout = p.out
		p.cmd.Stderr = p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("%s: start: %v", name, err)
		}
		go func() {
			p.waitErr = p.cmd.Wait()
			close(p.done)
		}()
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				t.Logf("output of %s (%s):\n%s", name, p.url, p.out.String())
			}
		})

		if lastErr = waitReady(p, readyPath, marker); lastErr == nil {
			return p
		}
		if !p.exited() {
			t.Fatalf("%s: %v", name, lastErr)
		}
		t.Logf("%s: attempt %d on port %s failed: %v\n%s", name, attempt, port, lastErr, p.out.String())
	}
	t.Fatalf("%s: did not start: %v", name, lastErr)
	return nil
}

// waitReady polls p until it answers, exits, or startTimeout passes.
func waitReady(p *process, path, marker string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		}
		resp, err := c.Get(p.url + path)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
			case !bytes.Contains(data, []byte(marker)):
				err = fmt.Errorf("GET %s: %q missing: another server on the port?", path, marker)
			default:
				return nil
			}
		}
		last = err
		select {
		case <-p.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready after %v: %v", startTimeout, last)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// childEnv is this process's environment without the variables that tell
// an App Engine app where it runs; the caller adds its own.
func childEnv() []string {
	drop := map[string]bool{
		"API_HOST": true, "API_PORT": true, "PORT": true,
		"GAE_ENV": true, "GAE_APPLICATION": true, "GAE_INSTANCE": true,
		"RUN_WITH_DEVAPPSERVER": true,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[strings.ToUpper(k)] {
			env = append(env, kv)
		}
	}
	return append(env, "GAE_APPLICATION="+appID)
}
