package aelocal

import (
	"bytes"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestConsoleEntityCutsLongValues: an entity's page shows the start of a
// long value, and the whole value is one link away, as text or as a file.
func TestConsoleEntityCutsLongValues(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	long := strings.Repeat("All work and no play makes Jack a dull boy. ", 12000) // 528 KB
	lines := strings.Repeat("x\n", 500)
	blob := bytes.Repeat([]byte{0, 1, 2, 0xfe}, 2000)
	key := datastore.NewKey(ctx, "Doc", "big", 0, nil)
	_, err := datastore.Put(ctx, key, &datastore.PropertyList{
		{Name: "Body", Value: long, NoIndex: true},
		{Name: "Lines", Value: lines, NoIndex: true},
		{Name: "Blob", Value: blob, NoIndex: true},
		{Name: "Short", Value: "fits"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code, page := getPage(t, s, "/datastore/entity?key="+key.Encode())
	if code != http.StatusOK {
		t.Fatal(code)
	}
	if len(page) > 40000 {
		t.Fatalf("the page of an entity with 550 KB of values is %d bytes", len(page))
	}
	mustContain(t, page, "fits", "All work and no play", "more (515.6 KiB in all)", "The first 512 B of 7.8 KiB.", "(1000 B in all)")
	if n := strings.Count(page, "x\n"); n > 40 {
		t.Fatalf("the page shows %d of the 500 lines", n)
	}
	links := regexp.MustCompile(`href="(/datastore/value\?[^"]+)"`).FindAllStringSubmatch(page, -1)
	got := map[string]string{}
	for _, l := range links {
		u := html.UnescapeString(l[1])
		q, _ := url.ParseQuery(strings.SplitN(u, "?", 2)[1])
		got[q.Get("prop")+q.Get("download")] = u
	}
	want := map[string]struct {
		body, ctype, disp string
	}{
		"Body":   {long, "text/plain; charset=utf-8", ""},
		"Body1":  {long, "text/plain; charset=utf-8", `attachment; filename=Body.txt`},
		"Lines":  {lines, "text/plain; charset=utf-8", ""},
		"Blob":   {string(blob), "application/octet-stream", `attachment; filename=Blob.bin`},
		"Short":  {},
		"Short1": {},
	}
	for name, w := range want {
		u, ok := got[name]
		if w.ctype == "" {
			if ok {
				t.Errorf("a short value links to %s", u)
			}
			continue
		}
		if !ok {
			t.Fatalf("no link %s on the page; links: %v", name, got)
		}
		resp, err := consoleClient.Get(s.URL() + u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != w.body || resp.Header.Get("Content-Type") != w.ctype || resp.Header.Get("Content-Disposition") != w.disp ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d bytes, %q, %q", u, len(b), resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
		}
	}
	for _, q := range []string{"prop=Body&i=1", "prop=Nope&i=0", "prop=Body&i=x"} {
		if code, _ := getPage(t, s, "/datastore/value?key="+key.Encode()+"&"+q); code != http.StatusNotFound {
			t.Errorf("value %s: %d, want 404", q, code)
		}
	}
}

// TestConsoleRemovesOneListValue: on a list, each item's Remove removes
// that item only; on a single value it removes the property.
func TestConsoleRemovesOneListValue(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	key := datastore.NewKey(ctx, "Book", "", 5, nil) // Tags: lisp, programming
	enc := key.Encode()
	remove := func(prop, i string) *http.Response {
		t.Helper()
		_, page := getPage(t, s, "/datastore/entity?key="+enc)
		ver := regexp.MustCompile(`name="ver" value="([^"]+)"`).FindStringSubmatch(page)[1]
		form := url.Values{"csrf": {s.console.token("/datastore/delprop")}, "key": {enc}, "prop": {prop}, "ver": {ver}}
		if i != "" {
			form.Set("i", i)
		}
		return postForm(t, s, "/datastore/delprop", form, nil)
	}
	_, page := getPage(t, s, "/datastore/entity?key="+enc)
	mustContain(t, page, `aria-label="remove Tags [0]"`, `aria-label="remove Tags [1]"`, `aria-label="remove Title"`)
	resp := remove("Tags", "0")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "done=valuedel") {
		t.Fatalf("removing Tags [0]: %d to %q", resp.StatusCode, loc)
	}
	var b consoleBook
	if err := datastore.Get(ctx, key, &b); err != nil || len(b.Tags) != 1 || b.Tags[0] != "programming" || b.Title == "" {
		t.Fatalf("after removing Tags [0] the app reads %+v, %v", b, err)
	}
	if resp := remove("Tags", "1"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("removing a value that is gone: %d", resp.StatusCode)
	}
	if resp := remove("Tags", "0"); !strings.Contains(resp.Header.Get("Location"), "done=propdel") {
		t.Fatalf("removing the last value: to %q", resp.Header.Get("Location"))
	}
	b = consoleBook{}
	if err := datastore.Get(ctx, key, &b); err != nil || len(b.Tags) != 0 || b.Year != 1985 {
		t.Fatalf("after removing the last tag the app reads %+v, %v", b, err)
	}
	_, page = getPage(t, s, "/datastore/entity?key="+enc+"&done=valuedel")
	mustContain(t, page, "Value removed from the list.")
}

// TestConsoleNewSkipsUntouchedNullRow: the form prefilled from an entity
// with a null property stores no null that nobody entered; the word null
// stores one.
func TestConsoleNewSkipsUntouchedNullRow(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Contact", "a", 0, nil), &datastore.PropertyList{
		{Name: "Name", Value: "Ann"}, {Name: "Phone", Value: nil},
	}); err != nil {
		t.Fatal(err)
	}
	_, page := getPage(t, s, "/datastore/new?kind=Contact")
	mustContain(t, page, `name="p1.name" value="Phone"`, `<option selected>null</option>`)
	create := func(id string, extra url.Values) {
		t.Helper()
		// What the browser sends for the prefilled form: every row,
		// Phone's with its type null and an empty value.
		form := url.Values{"csrf": {s.console.token("/datastore/new")}, "app": {DefaultAppID}, "kind": {"Contact"}, "id": {id}, "rows": {"2"},
			"p0.name": {"Name"}, "p0.type": {"string"}, "p0.value": {"Bob"}, "p0.indexed": {"1"},
			"p1.name": {"Phone"}, "p1.type": {"null"}, "p1.value": {""}, "p1.indexed": {"1"}}
		for k, v := range extra {
			form[k] = v
		}
		if resp := postForm(t, s, "/datastore/new", form, nil); resp.StatusCode != http.StatusSeeOther {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("create: %d\n%s", resp.StatusCode, b)
		}
	}
	create("b", nil)
	var pl datastore.PropertyList
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Contact", "b", 0, nil), &pl); err != nil || len(pl) != 1 || pl[0].Name != "Name" {
		t.Fatalf("the untouched null row was stored: %+v, %v", pl, err)
	}
	create("c", url.Values{"p1.value": {"null"}})
	pl = nil
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Contact", "c", 0, nil), &pl); err != nil || len(pl) != 2 || pl[1].Name != "Phone" || pl[1].Value != nil {
		t.Fatalf("a null written as null: %+v, %v", pl, err)
	}
}
