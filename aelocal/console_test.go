package aelocal

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
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

func TestConsoleServe(t *testing.T) {
	d, err := time.ParseDuration(strings.TrimSpace(fmt.Sprint(getenv("AELOCAL_CONSOLE_SERVE"))))
	if err != nil {
		t.Skip()
	}
	s := newTestServer(t)
	seedConsole(t, s)
	t.Log(s.URL())
	time.Sleep(d)
}

func getenv(k string) string { return strings.TrimSpace(os.Getenv(k)) }
