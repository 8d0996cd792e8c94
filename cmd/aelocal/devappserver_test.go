package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/aetest"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/user"
)

// aetestArgs are the arguments aetest (v2.0.6) passes, with a strongly
// consistent datastore and the emulator choice set.
var aetestArgs = []string{
	"--port=0", "--api_port=0", "--admin_port=0", "--automatic_restart=false",
	"--skip_sdk_update_check=true", "--clear_datastore=true", "--clear_search_indexes=true",
	"--datastore_path", "/tmp/appengine-aetest123/datastore",
	"--datastore_consistency_policy=consistent", "--support_datastore_emulator=false",
	"/tmp/appengine-aetest123/app",
}

func TestParseDevAppserver(t *testing.T) {
	if !isDevAppserver(aetestArgs) || isDevAppserver([]string{"-addr", "127.0.0.1:0"}) || isDevAppserver([]string{"x", "api_port"}) {
		t.Fatal("isDevAppserver")
	}
	c, err := parseDevAppserver(aetestArgs)
	if err != nil {
		t.Fatal(err)
	}
	want := devConfig{
		apiAddr: "127.0.0.1:0", adminAddr: "127.0.0.1:0",
		datastorePath: "/tmp/appengine-aetest123/datastore", clearDatastore: true,
		consistency: "consistent", apps: []string{"/tmp/appengine-aetest123/app"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}

	c, err = parseDevAppserver([]string{"--api_host=localhost", "--api_port", "10001", "--clear_datastore",
		"--enable_sendmail", "yes", "--log_level=debug", "-A", "myapp", "--admin_port=0", "app.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if c.apiAddr != "127.0.0.1:10001" || !c.clearDatastore || !reflect.DeepEqual(c.unknown, []string{"--enable_sendmail yes", "--log_level=debug"}) ||
		!reflect.DeepEqual(c.apps, []string{"app.yaml"}) {
		t.Fatalf("got %+v", c)
	}

	for _, bad := range [][]string{
		{"--api_port=notaport"},
		{"--clear_datastore=maybe"},
		{"--admin_port=0", "--datastore_path"},
	} {
		if _, err := parseDevAppserver(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWatchParent(t *testing.T) {
	var calls atomic.Int64
	ppid := func() int {
		if calls.Add(1) <= 3 {
			return 4242
		}
		return 1 // reparented to init
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchParent(ctx, cancel, ppid, time.Millisecond)
	if ctx.Err() == nil {
		t.Fatal("a changed parent did not end the server")
	}
	// Started by init: nothing to watch, returns at once.
	watchParent(context.Background(), func() { t.Error("cancelled") }, func() int { return 1 }, time.Millisecond)
}

func TestAdminQuitRefusesWebPages(t *testing.T) {
	quit := make(chan struct{})
	h := adminHandler("127.0.0.1:5000", quit)
	for _, c := range []struct {
		method, host string
		hdr          map[string]string
		code         int
	}{
		{"GET", "127.0.0.1:5000", map[string]string{"Origin": "http://evil.example"}, 403},
		{"GET", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"GET", "evil.example:5000", nil, 403},
		{"PUT", "127.0.0.1:5000", nil, 405},
		{"GET", "127.0.0.1:5000", nil, 200},
		{"GET", "127.0.0.1:5000", nil, 200}, // twice is fine
	} {
		req := httptest.NewRequest(c.method, "http://"+c.host+"/quit", nil)
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.code {
			t.Fatalf("%s %s %v: %d, want %d", c.method, c.host, c.hdr, rec.Code, c.code)
		}
		select {
		case <-quit:
			if c.code != 200 {
				t.Fatal("quit on a refused request")
			}
		default:
			if c.code == 200 {
				t.Fatal("no quit")
			}
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:5000/", nil))
	if rec.Code != 404 {
		t.Fatalf("GET /: %d", rec.Code)
	}
}

var startingRE = regexp.MustCompile(`Starting (API|admin) server at: (\S+)`)

// scanStarting reads the two lines aetest waits for and returns the URLs.
func scanStarting(r io.Reader) (api, admin string, lines []string, err error) {
	sc := bufio.NewScanner(r)
	for (api == "" || admin == "") && sc.Scan() {
		lines = append(lines, sc.Text())
		if m := startingRE.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] == "API" {
				api = m[2]
			} else {
				admin = m[2]
			}
		}
	}
	if api == "" || admin == "" {
		return "", "", lines, fmt.Errorf("no Starting lines in %q (%v)", lines, sc.Err())
	}
	return api, admin, lines, nil
}

func readStarting(t testing.TB, r io.Reader) (api, admin string, lines []string) {
	t.Helper()
	api, admin, lines, err := scanStarting(r)
	if err != nil {
		t.Fatal(err)
	}
	return api, admin, lines
}

func TestMain(m *testing.M) {
	if bin := os.Getenv("AELOCAL_TEST_PARENT_OF"); bin != "" {
		os.Exit(actAsParent(bin))
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// actAsParent starts aelocal as aetest does, prints its API URL and waits
// to be killed.
func actAsParent(bin string) int {
	cmd := exec.Command(bin, aetestArgs...)
	stderr, err := cmd.StderrPipe()
	if err == nil {
		err = cmd.Start()
	}
	var api string
	if err == nil {
		api, _, _, err = scanStarting(stderr)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("API", api, cmd.Process.Pid)
	select {}
}

// A killed test process (here: a stand-in that started aelocal as aetest
// does) leaves no aelocal behind.
func TestKilledParentLeavesNoServer(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the parent watch relies on reparenting, which Windows does not do")
	}
	bin := aelocalBinary(t)
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), "AELOCAL_TEST_PARENT_OF="+bin)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "API ") {
		parent.Process.Kill()
		t.Fatalf("parent said %q (%v)", line, err)
	}
	var api string
	var pid int
	fmt.Sscan(strings.TrimPrefix(line, "API "), &api, &pid)
	t.Cleanup(func() {
		if t.Failed() && pid > 0 {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill() // leave no orphan behind when the watch failed
			}
		}
	})
	post := func() error {
		resp, err := http.Post(api, "application/octet-stream", strings.NewReader(""))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := post(); err != nil {
		t.Fatalf("aelocal does not serve while its parent lives: %v", err)
	}

	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for post() == nil {
		if time.Now().After(deadline) {
			t.Fatal("aelocal still serves 30 s after its parent was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The dev_appserver mode in-process: the lines, unknown flags named once,
// the API served, /quit ends it.
func TestRunDevAppserverQuits(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runDevAppserver(context.Background(), append([]string{"--dev_appserver_log_level=debug"}, aetestArgs...), pw)
		pw.Close()
	}()
	api, admin, lines := readStarting(t, pr)
	go io.Copy(io.Discard, pr)
	if !strings.Contains(lines[0], "ignoring dev_appserver flags it does not use: --dev_appserver_log_level=debug") || len(lines) != 3 {
		t.Fatalf("stderr: %q", lines)
	}
	if !strings.HasSuffix(api, "/rpc_http") {
		t.Fatalf("API URL %s", api)
	}
	// An (empty) bridge call, with the headers App Engine's clients send.
	req, _ := http.NewRequest("POST", api, strings.NewReader(""))
	req.Header.Set("X-Google-RPC-Service-Endpoint", "app-engine-apis")
	req.Header.Set("X-Google-RPC-Service-Method", "/VMRemoteAPI.CallRemoteAPI")
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bridge: %d", resp.StatusCode)
	}
	resp, err = http.Get(admin + "/quit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running after /quit")
	}
	if _, err := http.Post(api, "application/octet-stream", strings.NewReader("")); err == nil {
		t.Fatal("API server still answers")
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// aelocalBinary builds the command once per test run.
func aelocalBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aelocal-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "aelocal")
		if runtime.GOOS == "windows" {
			binPath += ".exe"
		}
		out, err := exec.Command(goTool(), "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// useAelocal makes aetest start the built command.
func useAelocal(t testing.TB) {
	t.Helper()
	bin := aelocalBinary(t)
	if tt, ok := t.(interface{ Setenv(k, v string) }); ok {
		tt.Setenv("APPENGINE_DEV_APPSERVER_BINARY", bin)
	}
}

type entry struct {
	Owner string
	N     int
}

func TestAetestNewContext(t *testing.T) {
	useAelocal(t)
	ctx, done, err := aetest.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	it, err := memcache.Get(ctx, "k")
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("memcache: %v %v", it, err)
	}
	k := datastore.NewKey(ctx, "Entry", "e", 0, nil)
	if _, err := datastore.Put(ctx, k, &entry{"ann", 1}); err != nil {
		t.Fatal(err)
	}
	var got entry
	if err := datastore.Get(ctx, k, &got); err != nil || got.N != 1 {
		t.Fatalf("datastore: %+v %v", got, err)
	}
	if appengine.AppID(ctx) != "testapp" || k.AppID() != "dev~testapp" {
		t.Fatalf("app ID %q, key's %q", appengine.AppID(ctx), k.AppID())
	}
}

func TestAetestInstance(t *testing.T) {
	useAelocal(t)
	inst, err := aetest.NewInstance(&aetest.Options{StronglyConsistentDatastore: true, SuppressDevAppServerLog: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			inst.Close()
		}
	}()
	newCtx := func(u *user.User) context.Context {
		t.Helper()
		req, err := inst.NewRequest("GET", "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if u != nil {
			aetest.Login(u, req)
		}
		return appengine.NewContext(req)
	}

	// Several requests share the instance's data; Login sets the user.
	for i, name := range []string{"ann@example.com", "bob@example.com", "cy@example.com"} {
		ctx := newCtx(&user.User{Email: name, Admin: i == 0})
		u := user.Current(ctx)
		if u == nil || u.Email != name || user.IsAdmin(ctx) != (i == 0) {
			t.Fatalf("request %d: user %+v, admin %v", i, u, user.IsAdmin(ctx))
		}
		k := datastore.NewKey(ctx, "Entry", "", int64(i+1), nil)
		if _, err := datastore.Put(ctx, k, &entry{u.Email, i}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := newCtx(nil)
	if user.Current(ctx) != nil {
		t.Fatal("logged in without Login")
	}
	var all []entry
	if _, err := datastore.NewQuery("Entry").Filter("N >=", 1).Order("-N").GetAll(ctx, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Owner != "cy@example.com" {
		t.Fatalf("query: %+v", all)
	}
	if n, err := memcache.Increment(ctx, "hits", 2, 40); err != nil || n != 42 {
		t.Fatalf("memcache: %d %v", n, err)
	}

	// Transactions: commit, rollback, a conflict retried.
	k := datastore.NewKey(ctx, "Entry", "", 1, nil)
	attempts := 0
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		attempts++
		var e entry
		if err := datastore.Get(tc, k, &e); err != nil {
			return err
		}
		if attempts == 1 {
			if _, err := datastore.Put(newCtx(nil), k, &entry{"other", 100}); err != nil {
				return err
			}
		}
		e.N++
		_, err := datastore.Put(tc, k, &e)
		return err
	}, nil)
	var e entry
	if err != nil || attempts != 2 || datastore.Get(ctx, k, &e) != nil || e.N != 101 {
		t.Fatalf("transaction: %v after %d attempts, %+v", err, attempts, e)
	}
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		datastore.Put(tc, k, &entry{"gone", -1})
		return errors.New("roll back")
	}, nil)
	if err == nil || datastore.Get(ctx, k, &e) != nil || e.N != 101 {
		t.Fatalf("rollback: %v, %+v", err, e)
	}

	// Close returns once the process has exited (aetest waits for it);
	// calls then find no server.
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := datastore.Get(ctx, k, &e); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("after Close: %v", err)
	}
}

// BenchmarkAetestInstance measures what one aetest instance costs with
// aelocal as its dev_appserver: NewInstance (temporary app directory,
// process start, the Starting lines), one request's datastore Put, and
// Close (/quit, waiting for the exit).
func BenchmarkAetestInstance(b *testing.B) {
	bin := aelocalBinary(b)
	b.Setenv("APPENGINE_DEV_APPSERVER_BINARY", bin)
	var start time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		inst, err := aetest.NewInstance(&aetest.Options{SuppressDevAppServerLog: true})
		if err != nil {
			b.Fatal(err)
		}
		start += time.Since(t0)
		req, err := inst.NewRequest("GET", "/", nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := appengine.NewContext(req)
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", "k", 0, nil), &entry{}); err != nil {
			b.Fatal(err)
		}
		if err := inst.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N)/1000, "ms-to-start/op")
}
