package aelocal

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestConsoleErrorPages: an error says what is wrong once, in words, and
// offers the ways back: the page the browser came from, the most specific
// page that still exists, the section, and the home page.
func TestConsoleErrorPages(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	get := func(path, referer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		resp, err := consoleClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	once := func(page, text string) {
		t.Helper()
		if n := strings.Count(page, text); n != 1 {
			t.Fatalf("the page says %q %d times:\n%s", text, n, page)
		}
	}
	gone := datastore.NewKey(ctx, "Book", "", 99, nil).Encode()
	for _, tc := range []struct {
		path, referer string
		status        int
		want          []string
		not           []string
	}{
		{"/datastore/entity?key=abcd", s.URL() + "/datastore", http.StatusBadRequest,
			[]string{"<h1>That cannot be done</h1>", "is not an encoded key: it does not decode to one",
				`Back to: <a href="/datastore">the previous page</a> · <a href="/datastore">Datastore</a> · <a href="/">the console&#39;s home page</a>`},
			[]string{"wire-format", "proto:", "Bad Request"}},
		{"/datastore/entity?key=" + gone, "", http.StatusNotFound,
			[]string{"<h1>Not found</h1>", "there is no entity /Book,99", `<a href="/datastore/kind?app=dev~aelocal&amp;kind=Book">the list of Book</a>`},
			[]string{"the previous page"}},
		{"/datastore/edit?prop=Nope&i=0&key=" + datastore.NewKey(ctx, "Book", "", 2, nil).Encode(), "", http.StatusNotFound,
			[]string{"has no value 0 of property", `>the entity /Book,2</a>`, "the list of Book"}, nil},
		{"/taskqueues/queue?name=nope", s.URL() + "//evil.example/x", http.StatusNotFound,
			nil, []string{"evil", "the previous page"}},
		{"/taskqueues/queue?name=nope", s.URL() + "/%5Cevil.example/x", http.StatusNotFound,
			nil, []string{"evil", "the previous page"}},
		{"/taskqueues/queue?name=nope", "http://evil.example/x", http.StatusNotFound,
			[]string{`<a href="/taskqueues">Task queues</a>`, `<a href="/taskqueues" aria-current="page">`}, []string{"evil", "the previous page"}},
		// A bad filter value: the error, and no word of matches.
		{"/datastore/kind?kind=Book&fprop=Year&fop=ge&fval=abc&ftype=int", "", http.StatusBadRequest,
			[]string{`filter Year: &#34;abc&#34; is not an integer`, "Nothing is listed: fix the filter above", "list every Book"},
			[]string{"No entities", "match"}},
		// A namespace memcache refuses: the error, and no "No item".
		{"/memcache?ns=bad%20ns&key=x", "", http.StatusBadRequest,
			[]string{"namespace value &#34;bad ns&#34;"}, []string{"No item"}},
	} {
		code, page := get(tc.path, tc.referer)
		if code != tc.status {
			t.Fatalf("%s: %d, want %d\n%s", tc.path, code, tc.status, page)
		}
		mustContain(t, page, tc.want...)
		for _, n := range tc.not {
			if strings.Contains(page, n) {
				t.Fatalf("%s says %q:\n%s", tc.path, n, page)
			}
		}
		// The message appears once, whatever the page.
		i := strings.Index(page, `role="alert"`)
		if i < 0 || strings.Count(page, `role="alert"`) != 1 {
			t.Fatalf("%s: not one error message:\n%s", tc.path, page)
		}
		msg := page[i : i+strings.Index(page[i:], "</p>")]
		once(page, msg[strings.Index(msg, ">")+1:])
	}

	// An inequality filter and another sort: one sentence says the order
	// the results have, and nothing else says another.
	_, page := getPage(t, s, "/datastore/kind?kind=Book&fprop=Year&fop=ge&fval=1980&sort=Title&desc=1")
	mustContain(t, page, "Sorted by Year, then by Title, descending: the datastore sorts a query with an inequality filter by that property before any other order.")
	once(page, "Sorted by")
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Title&desc=1")
	mustContain(t, page, "Sorted by Title, descending.")
	once(page, "Sorted by")
}
