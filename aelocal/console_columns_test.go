package aelocal

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// listedColumns returns the property columns of a listing's table, in
// order.
func listedColumns(t *testing.T, page string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<table class="stack entities">.*?</thead>`).FindString(page)
	var cols []string
	for _, c := range regexp.MustCompile(`<th>(?:<a [^>]*>|<span [^>]*>)([^<]+)</`).FindAllStringSubmatch(m, -1) {
		if c[1] != "Key" && c[1] != "Select" {
			cols = append(cols, html.UnescapeString(c[1]))
		}
	}
	return cols
}

// TestConsoleColumns: a person picks and orders a kind's columns; the
// choice holds for every listing of the kind until reset; the listing
// always shows what it is sorted by.
func TestConsoleColumns(t *testing.T) {
	s := newTestServer(t)
	seedConsole(t, s)
	_, page := getPage(t, s, "/datastore/kind?kind=Book")
	all := []string{"Added", "Author", "Cover", "InPrint", "Price", "Publisher", "Shelf", "Summary", "Tags", "Title", "Year"}
	if got := listedColumns(t, page); !slices.Equal(got, all) {
		t.Fatalf("columns before a choice: %v", got)
	}
	// Sorted by a property: it comes first.
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Year")
	if got := listedColumns(t, page); got[0] != "Year" || len(got) != len(all) {
		t.Fatalf("sorted by Year, the columns are %v", got)
	}

	// The form lists every property; pick Title, Year, Author in that
	// order by ticking them and numbering them.
	_, page = getPage(t, s, "/datastore/kind?kind=Book&fprop=Year&fop=ge&fval=1900")
	back := html.UnescapeString(regexp.MustCompile(`action="/datastore/columns">\s*<input[^>]*>\s*<input type="hidden" name="app" value="[^"]*"><input type="hidden" name="kind" value="Book"><input type="hidden" name="back" value="([^"]+)">`).FindStringSubmatch(page)[1])
	form := url.Values{"csrf": {tokenFor(t, page, "/datastore/columns")}, "app": {DefaultAppID}, "kind": {"Book"}, "back": {back}}
	rows := regexp.MustCompile(`name="c(\d+)" value="([^"]+)"`).FindAllStringSubmatch(page, -1)
	form.Set("cols", "11")
	want := map[string]string{"Title": "1", "Year": "2", "Author": "3"}
	for _, r := range rows {
		form.Set("c"+r[1], r[2])
		form.Set("o"+r[1], "7")
		if pos, ok := want[r[2]]; ok {
			form.Set("s"+r[1], "1")
			form.Set("o"+r[1], pos)
		}
	}
	if len(rows) != len(all) {
		t.Fatalf("the form offers %d properties", len(rows))
	}
	resp := postForm(t, s, "/datastore/columns", form, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != back+"&done=colssaved" {
		t.Fatalf("saving columns: %d to %q", resp.StatusCode, loc)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Book&done=colssaved")
	mustContain(t, page, "Columns saved for this kind.", "Columns (your choice)")
	if got := listedColumns(t, page); !slices.Equal(got, []string{"Title", "Year", "Author"}) {
		t.Fatalf("after the choice the columns are %v", got)
	}
	// The form offers the others too, after the chosen ones.
	if got := regexp.MustCompile(`name="c\d+" value="([^"]+)"`).FindAllStringSubmatch(page, -1); len(got) != len(all) || got[0][1] != "Title" || got[3][1] != "Added" {
		t.Fatalf("the form after the choice: %v", got)
	}
	// Sorted by a chosen column: the same; by
	// one left out: it is shown, first.
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Author&desc=1")
	if got := listedColumns(t, page); !slices.Equal(got, []string{"Title", "Year", "Author"}) {
		t.Fatalf("sorted by Author: %v", got)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Price")
	if got := listedColumns(t, page); !slices.Equal(got, []string{"Price", "Title", "Year", "Author"}) {
		t.Fatalf("sorted by Price: %v", got)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Title&fprop=Added&fop=gt&fval=2020-01-01T00:00:00Z")
	if got := listedColumns(t, page); !slices.Equal(got, []string{"Added", "Title", "Year", "Author"}) {
		t.Fatalf("with an inequality on Added: %v", got)
	}
	// The cells follow their columns.
	if !strings.Contains(page, `<td data-label="Title">Neuromancer</td><td data-label="Year">1984</td><td data-label="Author">William Gibson</td>`) {
		t.Fatalf("the cells do not follow the columns:\n%s", page)
	}
	// Reset: every column again.
	resp = postForm(t, s, "/datastore/columns", url.Values{"csrf": {form.Get("csrf")}, "app": {DefaultAppID}, "kind": {"Book"}, "back": {"/datastore/kind?kind=Book"}, "reset": {"1"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/datastore/kind?kind=Book&done=colsreset" {
		t.Fatalf("reset: to %q", loc)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Book")
	if got := listedColumns(t, page); !slices.Equal(got, all) {
		t.Fatalf("columns after the reset: %v", got)
	}
	// A return address elsewhere is not followed.
	resp = postForm(t, s, "/datastore/columns", url.Values{"csrf": {form.Get("csrf")}, "app": {DefaultAppID}, "kind": {"Book"}, "back": {"//evil.example/"}, "cols": {"0"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/datastore?done=colssaved" {
		t.Fatalf("a foreign return address: to %q", loc)
	}
}

// TestConsoleColumnsBounded: what the console remembers of column choices
// stays bounded however many kinds and columns are posted.
func TestConsoleColumnsBounded(t *testing.T) {
	s := newTestServer(t)
	c := s.console
	name := strings.Repeat("p", 1000)
	cols := make([]string, maxChosenColumns)
	for i := range cols {
		cols[i] = name
	}
	for i := range 100 {
		c.setColumns(DefaultAppID, "Kind"+strings.Repeat("k", i), cols)
		if c.columns.bytes > maxColumnsBytes {
			t.Fatalf("after %d kinds the choices hold %d bytes", i+1, c.columns.bytes)
		}
	}
	c.setColumns(DefaultAppID, "Small", []string{"A"})
	c.setColumns(DefaultAppID, "Small", []string{"B"})
	if got, ok := c.chosenColumns(DefaultAppID, "Small"); !ok || !slices.Equal(got, []string{"B"}) {
		t.Fatalf("a replaced choice reads %v, %v", got, ok)
	}
	form := url.Values{"csrf": {c.token("/datastore/columns")}, "app": {DefaultAppID}, "kind": {"Big"}, "cols": {"300"}}
	for i := range 300 {
		form.Set("c"+strconv.Itoa(i), "P"+strconv.Itoa(i))
		form.Set("s"+strconv.Itoa(i), "1")
	}
	if resp := postForm(t, s, "/datastore/columns", form, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("300 columns: %d, want 400", resp.StatusCode)
	}
	if _, ok := c.chosenColumns(DefaultAppID, "Big"); ok {
		t.Fatal("a refused choice was kept")
	}
}
