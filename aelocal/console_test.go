package aelocal

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/mail"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/taskqueue"
)

// consoleBook is the sample kind the console tests browse.
type consoleBook struct {
	Title     string
	Author    string
	Year      int
	Price     float64
	InPrint   bool
	Added     time.Time
	Tags      []string
	Summary   string `datastore:",noindex"`
	Cover     []byte
	Publisher *datastore.Key
	Shelf     appengine.GeoPoint
}

// seedConsole fills s with a small datastore and memcache through the real
// client, as an app would, and returns the context it used.
func seedConsole(t testing.TB, s *Server) context.Context {
	t.Helper()
	ctx := middlewareContext(t, s)
	pub := datastore.NewKey(ctx, "Publisher", "penguin", 0, nil)
	if _, err := datastore.Put(ctx, pub, &struct{ Name, City string }{"Penguin Books", "London"}); err != nil {
		t.Fatal(err)
	}
	books := []consoleBook{
		{Title: "The Go Programming Language", Author: "Donovan & Kernighan", Year: 2015, Price: 34.99, InPrint: true, Tags: []string{"go", "programming"}},
		{Title: "Dune", Author: "Frank Herbert", Year: 1965, Price: 9.99, InPrint: true, Tags: []string{"sf"}},
		{Title: "Neuromancer", Author: "William Gibson", Year: 1984, Price: 8.5, InPrint: true, Tags: []string{"sf", "cyberpunk"}},
		{Title: "The Left Hand of Darkness", Author: "Ursula K. Le Guin", Year: 1969, Price: 10.25, InPrint: true, Tags: []string{"sf"}},
		{Title: "Structure and Interpretation of Computer Programs", Author: "Abelson & Sussman", Year: 1985, Price: 55, InPrint: false, Tags: []string{"lisp", "programming"}},
		{Title: "Snow Crash", Author: "Neal Stephenson", Year: 1992, Price: 12, InPrint: true, Tags: []string{"sf", "cyberpunk"}},
	}
	for i, b := range books {
		b.Added = time.Date(2024, 1, 2+i, 10, 30, 0, 0, time.UTC)
		b.Summary = fmt.Sprintf("Shelf %c, copy %d.", 'A'+i, i+1)
		b.Cover = []byte{0x89, 'P', 'N', 'G', byte(i)}
		b.Publisher = pub
		b.Shelf = appengine.GeoPoint{Lat: 47.5 + float64(i)/10, Lng: 19.04}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Book", "", int64(i+1), nil), &b); err != nil {
			t.Fatal(err)
		}
	}
	nsCtx, err := appengine.Namespace(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := datastore.Put(nsCtx, datastore.NewIncompleteKey(nsCtx, "Setting", nil), &struct{ Value string }{"dark"}); err != nil {
		t.Fatal(err)
	}
	if err := memcache.Set(ctx, &memcache.Item{Key: "greeting", Value: []byte("hello, console"), Expiration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := memcache.Set(ctx, &memcache.Item{Key: "binary", Value: []byte{0, 1, 2, 0xfe, 0xff}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// consoleClient is a browser stand-in for the HTTP tests: it keeps no
// cookies (the console needs none) and does not follow redirects, so a
// test sees each answer.
var consoleClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getPage(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := consoleClient.Get(s.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// tokenFor finds the CSRF token of the form on page that posts to action.
func tokenFor(t *testing.T, page, action string) string {
	t.Helper()
	re := regexp.MustCompile(`action="` + regexp.QuoteMeta(action) + `"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form posting to %s on the page", action)
	}
	return m[1]
}

func postForm(t *testing.T, s *Server, path string, form url.Values, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := consoleClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func mustContain(t *testing.T, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Fatalf("page lacks %q:\n%s", w, page)
		}
	}
}

// consolePosts are the console's actions with a valid form for each, given
// a page that carries their tokens.
var consoleActions = []string{"/datastore/edit", "/datastore/delprop", "/datastore/delete", "/datastore/new", "/datastore/columns", "/memcache/delete", "/memcache/flush", "/rpcs/reset", "/cron/run",
	"/taskqueues/run", "/taskqueues/delete", "/taskqueues/purge", "/mail/clear", "/search/delete"}

func TestConsoleGETChangesNothing(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	key := datastore.NewKey(ctx, "Book", "", 1, nil)
	enc := key.Encode()
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "t1", Path: "/work"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Body: "b"}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	// Every page, and every action's path with the parameters its form
	// would post, as a GET: a link or an image on another site can do
	// no more than this.
	pages := []string{"/", "/datastore", "/datastore?ns=tenant-a", "/datastore/kind?kind=Book&sort=Year&desc=1&fprop=Year&fop=gt&fval=1970",
		"/datastore/entity?key=" + enc, "/datastore/edit?key=" + enc + "&prop=Price&i=0", "/datastore/new?kind=Book",
		"/memcache", "/memcache?key=greeting", "/rpcs", "/cron", "/console.css",
		"/taskqueues", "/taskqueues/queue?name=default", "/taskqueues/task?queue=default&name=t1", "/mail", "/mail/message?id=1"}
	for _, p := range pages {
		if code, body := getPage(t, s, p); code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, code, body)
		}
	}
	for _, a := range consoleActions {
		q := "?key=" + enc + "&prop=Price&i=0&type=float&value=1&ns=&job=0&kind=Book&rows=1&p0.name=X&p0.type=int&p0.value=1&queue=default&task=t1"
		want := http.StatusMethodNotAllowed
		if a == "/datastore/edit" || a == "/datastore/new" {
			want = http.StatusOK // the form itself
		}
		if code, _ := getPage(t, s, a+q); code != want {
			t.Fatalf("GET %s: %d, want %d", a, code, want)
		}
	}
	if n, err := datastore.NewQuery("Book").Count(ctx); err != nil || n != 6 {
		t.Fatalf("%d books after the GETs (%v), want 6", n, err)
	}
	before["datastore_v3.RunQuery"]++ // the Count above
	if after := s.Stats(); !maps.Equal(before, after) {
		t.Fatalf("the pages made RPCs that count: before %v, after %v", before, after)
	}
	if len(s.Tasks("")) != 1 || len(s.Mail()) != 1 {
		t.Fatalf("after the GETs: tasks %v, %d messages", s.Tasks(""), len(s.Mail()))
	}
	var b consoleBook
	if err := datastore.Get(ctx, key, &b); err != nil || b.Price != 34.99 {
		t.Fatalf("Book 1 after the GETs: %+v, %v", b, err)
	}
	st, err := memcache.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Items != 2 || st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("memcache after the GETs: %+v; a look-up must be a peek", st)
	}
}

func TestConsoleRefusesForgedPosts(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	_, page := getPage(t, s, "/memcache")
	flushToken := tokenFor(t, page, "/memcache/flush")
	deleteToken := tokenFor(t, page+`<form method="post" action="/memcache/delete" class="inline">
<input type="hidden" name="csrf" value="`+s.console.token("/memcache/delete")+`">`, "/memcache/delete")
	self := "http://" + strings.TrimPrefix(s.URL(), "http://")
	for _, tc := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {otherFirstByte(flushToken)}}, nil},
		{"another form's token", url.Values{"csrf": {deleteToken}}, nil},
		{"another server's token", url.Values{"csrf": {newTestServer(t).console.token("/memcache/flush")}}, nil},
		{"cross-site", url.Values{"csrf": {flushToken}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"same-site", url.Values{"csrf": {flushToken}}, http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"other origin", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"http://evil.example"}}},
		{"null origin", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"null"}}},
		{"other port", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"http://127.0.0.1:1"}}},
	} {
		resp := postForm(t, s, "/memcache/flush", tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", tc.name, resp.StatusCode)
		}
		if _, err := memcache.Get(ctx, "greeting"); err != nil {
			t.Fatalf("%s: memcache was flushed (%v)", tc.name, err)
		}
	}
	resp := postForm(t, s, "/memcache/flush", url.Values{"csrf": {flushToken}},
		http.Header{"Origin": {self}, "Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/memcache?done=flushed" {
		t.Fatalf("a good post: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := memcache.Get(ctx, "greeting"); err != memcache.ErrCacheMiss {
		t.Fatalf("after the flush: %v", err)
	}
}

// otherFirstByte returns token with its first character changed, so it is
// a well-formed token that is not the right one.
func otherFirstByte(token string) string {
	if token[0] == 'x' {
		return "y" + token[1:]
	}
	return "x" + token[1:]
}

func TestConsoleHeaders(t *testing.T) {
	s := newTestServer(t)
	resp, err := http.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if code, body := getPage(t, s, "/no/such/page"); code != http.StatusNotFound || !strings.Contains(body, "no such page") {
		t.Fatalf("an unknown page: %d\n%s", code, body)
	}
	// The bridge is still where clients look for it.
	if code, _ := getPage(t, s, "/rpc_http"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /rpc_http: %d", code)
	}
}

func TestConsoleMemcache(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	nsCtx, _ := appengine.Namespace(ctx, "tenant-a")
	memcache.Set(nsCtx, &memcache.Item{Key: "greeting", Value: []byte("szia")})
	memcache.Delete(ctx, "gone") // a miss, counted
	memcache.Get(ctx, "greeting")

	_, page := getPage(t, s, "/memcache")
	mustContain(t, page, `id="mc-items">3<`, `id="mc-hits">1<`, `id="mc-misses">0<`)
	_, page = getPage(t, s, "/memcache?key=greeting")
	mustContain(t, page, "hello, console", "(text)")
	if !regexp.MustCompile(`id="mc-expires">[^<]*\(in (5\dm\d+s|1h0m0s)\)`).MatchString(page) {
		t.Fatalf("the expiry is not an hour from now:\n%s", page)
	}
	_, page = getPage(t, s, "/memcache?ns=tenant-a&key=greeting")
	mustContain(t, page, "szia", `id="mc-expires">never<`)
	_, page = getPage(t, s, "/memcache?key=binary")
	mustContain(t, page, "(binary, hex)", "00 01 02 fe ff")
	_, page = getPage(t, s, "/memcache?key=nothing")
	mustContain(t, page, "No item under <code>nothing</code>")
	code, page := getPage(t, s, "/memcache?key="+strings.Repeat("k", 251))
	if code != http.StatusBadRequest || !strings.Contains(page, "exceeds the 250-byte limit") {
		t.Fatalf("a key too long: %d", code)
	}
	// Delete one key of one namespace.
	resp := postForm(t, s, "/memcache/delete", url.Values{"csrf": {s.console.token("/memcache/delete")}, "ns": {"tenant-a"}, "key": {"greeting"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/memcache?done=mcdeleted&key=greeting&ns=tenant-a" {
		t.Fatalf("after delete: %q", loc)
	}
	if _, err := memcache.Get(nsCtx, "greeting"); err != memcache.ErrCacheMiss {
		t.Fatal(err)
	}
	if _, err := memcache.Get(ctx, "greeting"); err != nil {
		t.Fatalf("the default namespace's greeting: %v", err)
	}
	resp = postForm(t, s, "/memcache/delete", url.Values{"csrf": {s.console.token("/memcache/delete")}, "key": {"nothing"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "done=mcmissing") {
		t.Fatalf("deleting a missing key: %q", loc)
	}
	// A delete-locked key shows its lock.
	memcache.Set(ctx, &memcache.Item{Key: "locked", Value: []byte("v")})
	if _, err := mcCall(t, ctx, "Delete", "DeleteRequest", "DeleteResponse", func(in pmsg) {
		it := in.AppendMsg("item")
		it.Set("key", "locked")
		it.Set("delete_time", uint32(60))
	}); err != nil {
		t.Fatal(err)
	}
	_, page = getPage(t, s, "/memcache?key=locked")
	mustContain(t, page, "Deleted, and locked against add until")
}

func TestConsoleRPCs(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")})
	s.FailNext("memcache", "Get", 1)
	memcache.Get(ctx, "k")
	s.SetLatency("memcache.Delete", 20*time.Millisecond)
	memcache.Delete(ctx, "k")
	datastore.Get(ctx, datastore.NewKey(ctx, "", "x", 0, nil), &datastore.PropertyList{}) // refused by the client: no RPC
	datastore.Get(ctx, datastore.NewKey(ctx, "K", "x", 0, nil), &datastore.PropertyList{})

	_, page := getPage(t, s, "/rpcs")
	// Failures per method, with the error code's name.
	mustContain(t, page, "4 calls since", `1 failed</a>`,
		`<td data-label="Service">memcache</td><td data-label="Method">Get</td><td data-label="Calls" class="num">1</td><td data-label="Failed" class="num"><a href="/rpcs?call=memcache.Get&amp;failed=1#rpc-log" aria-label="failed calls of memcache.Get">1</a></td>`,
		`<td data-label="Service">datastore_v3</td><td data-label="Method">Get</td><td data-label="Calls" class="num">1</td><td data-label="Failed" class="num">0</td>`,
		"UNSPECIFIED_ERROR: aelocal: injected failure of memcache.Get (application error 1)")
	s.FailNext("datastore_v3", "Put", 1)
	datastore.Put(ctx, datastore.NewKey(ctx, "K", "x", 0, nil), &datastore.PropertyList{})
	datastore.Put(ctx, datastore.NewKey(ctx, "K", "y", 0, nil), &datastore.PropertyList{})
	// The failed calls alone, of every method and of one.
	_, page = getPage(t, s, "/rpcs?failed=1")
	mustContain(t, page, "2 failed", "INTERNAL_ERROR: aelocal: injected failure of datastore_v3.Put (application error 3)", "UNSPECIFIED_ERROR", "shown: failed calls.")
	if n := strings.Count(page, `<td data-label="#">`); n != 2 {
		t.Fatalf("the failed calls are %d rows, want 2", n)
	}
	_, page = getPage(t, s, "/rpcs?failed=1&call=datastore_v3.Put")
	if n := strings.Count(page, `<td data-label="#">`); n != 1 || !strings.Contains(page, "INTERNAL_ERROR") {
		t.Fatalf("the failed calls of datastore_v3.Put are %d rows", n)
	}
	_, page = getPage(t, s, "/rpcs?failed=1&call=memcache.Set")
	mustContain(t, page, "No such calls in the log.")
	if got := s.rpcs.failures(); len(got) != 2 || got["memcache.Get"] != 1 || got["datastore_v3.Put"] != 1 {
		t.Fatalf("failures: %v", got)
	}
	calls := s.rpcs.latest(0, 10)[2:]
	if len(calls) != 4 || calls[0].Name != "datastore_v3.Get" || calls[3].Name != "memcache.Set" || calls[2].OK || !calls[0].OK {
		t.Fatalf("the log: %+v", calls)
	}
	if d := calls[1].Duration; calls[1].Name != "memcache.Delete" || d < 20*time.Millisecond {
		t.Fatalf("the delayed call: %s took %v", calls[1].Name, d)
	}
	// Reset empties both.
	resp := postForm(t, s, "/rpcs/reset", url.Values{"csrf": {tokenFor(t, page, "/rpcs/reset")}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	_, page = getPage(t, s, "/rpcs?done=reset")
	mustContain(t, page, "0 calls since", "No calls yet.", "No calls logged.", "RPC counts and the call log were reset.")
	if len(s.Stats()) != 0 || len(s.rpcs.latest(0, 10)) != 0 || len(s.rpcs.failures()) != 0 {
		t.Fatal("reset left counts or calls")
	}
	// The log keeps the last rpcLogSize calls and pages through them.
	for i := range rpcLogSize + 30 {
		memcache.Set(ctx, &memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte("v")})
	}
	all := s.rpcs.latest(0, 2*rpcLogSize)
	if len(all) != rpcLogSize || all[0].Seq != all[rpcLogSize-1].Seq+rpcLogSize-1 {
		t.Fatalf("the log holds %d calls, from %d to %d", len(all), all[rpcLogSize-1].Seq, all[0].Seq)
	}
	_, page = getPage(t, s, "/rpcs")
	older := regexp.MustCompile(`href="/rpcs\?before=(\d+)" rel="next"`).FindStringSubmatch(page)
	if older == nil || strings.Count(page, "<td data-label=\"#\">") != rpcsPerPage {
		t.Fatalf("the first page of the log: %v", older)
	}
	_, page = getPage(t, s, "/rpcs?before="+older[1])
	mustContain(t, page, `<td data-label="#">`+strconv.FormatUint(all[rpcsPerPage].Seq, 10)+`</td>`, "« Newest")
}

func TestRPCLogConcurrent(t *testing.T) {
	l := newRPCLog()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				var err error
				if i%2 == 0 {
					err = &serviceError{code: int32(g), detail: "x"}
				}
				l.record("s.M", time.Now(), i, &err)
				l.latest(0, 5)
			}
		}()
	}
	wg.Wait()
	got := l.latest(0, rpcLogSize+10)
	if len(got) != rpcLogSize || got[0].Seq != 1600 || got[rpcLogSize-1].Seq != 1600-rpcLogSize+1 {
		t.Fatalf("%d records, %d..%d", len(got), got[len(got)-1].Seq, got[0].Seq)
	}
}

func TestConsoleCron(t *testing.T) {
	var hits []*http.Request
	var mu sync.Mutex
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r)
		mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/login", http.StatusFound)
		case "/binary":
			w.Write([]byte{0, 1, 2})
		default:
			w.Write([]byte("done"))
		}
	}))
	defer app.Close()
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "cron.yaml")
	write := func(text string) {
		if err := os.WriteFile(yamlPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cron:\n- url: /a?x=1\n  schedule: every 5 minutes\n  retry_parameters:\n    job_retry_limit: 2\n- url: /redirect\n  schedule: every day 00:00\n  target: worker\n- url: /binary\n  schedule: every 1 hours\n")

	// Mistakes in the settings stop the server at once.
	for name, o := range map[string]Options{
		"no file":      {CronYAML: filepath.Join(dir, "missing.yaml")},
		"bad app URL":  {AppURL: "127.0.0.1:8080"},
		"ftp app URL":  {AppURL: "ftp://127.0.0.1"},
		"bad yaml":     {CronYAML: writeTemp(t, "cron: [url: /x")},
		"no url":       {CronYAML: writeTemp(t, "cron:\n- schedule: every 5 minutes\n")},
		"relative url": {CronYAML: writeTemp(t, "cron:\n- url: x\n  schedule: every 5 minutes\n")},
		"no schedule":  {CronYAML: writeTemp(t, "cron:\n- url: /x\n")},
	} {
		if s, err := NewServerOptions(&o); err == nil {
			s.Close()
			t.Errorf("%s: the server started", name)
		}
	}

	s, err := NewServerOptions(&Options{CronYAML: yamlPath, AppURL: app.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, page := getPage(t, s, "/cron")
	mustContain(t, page, "/a?x=1", "every 5 minutes", "target worker", "never")
	run := func(job int, url_ string) *http.Response {
		t.Helper()
		return postForm(t, s, "/cron/run", url.Values{"csrf": {tokenFor(t, page, "/cron/run")}, "job": {strconv.Itoa(job)}, "url": {url_}}, nil)
	}
	if resp := run(0, "/a?x=1"); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	if resp := run(1, "/redirect"); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	run(2, "/binary")
	mu.Lock()
	if len(hits) != 3 || hits[0].URL.String() != "/a?x=1" || hits[0].Method != "GET" || hits[0].Header.Get("X-Appengine-Cron") != "true" || hits[1].URL.Path != "/redirect" {
		t.Fatalf("the app got %d requests: %v", len(hits), hits)
	}
	mu.Unlock()
	_, page = getPage(t, s, "/cron")
	mustContain(t, page, "200 OK", "done", "302 Found", "00 01 02")
	// The yaml changed under the page: refused.
	write("cron:\n- url: /b\n  schedule: every 5 minutes\n")
	if resp := run(0, "/a?x=1"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a job that is gone: %d", resp.StatusCode)
	}
	// A broken file is reported on the page, not fatal.
	write("cron: [")
	code, page := getPage(t, s, "/cron")
	if code != http.StatusOK || !strings.Contains(page, "cron.yaml") || !strings.Contains(page, `class="error"`) {
		t.Fatalf("a broken cron.yaml: %d", code)
	}
	// The app is down: the run says so.
	write("cron:\n- url: /b\n  schedule: every 5 minutes\n")
	app.Close()
	_, page = getPage(t, s, "/cron")
	run(0, "/b")
	_, page = getPage(t, s, "/cron")
	mustContain(t, page, "failed", "connect")

	// Without settings the page says how to give them, and runs nothing.
	s2 := newTestServer(t)
	_, page = getPage(t, s2, "/cron")
	mustContain(t, page, "No cron.yaml was given", "-cron_yaml")
	resp := postForm(t, s2, "/cron/run", url.Values{"csrf": {s2.console.token("/cron/run")}, "job": {"0"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("running without cron.yaml: %d", resp.StatusCode)
	}
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cron.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
