package aelocal

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The columns of a kind's listing: which properties it shows and in what
// order, as a person picked them on the listing's Columns form. The
// choice is kept per app and kind (a kind has the same properties in
// every namespace, as a rule), in the server's memory for as long as it
// runs: the console sets no cookie and runs no script, and only the
// form's POST changes the choice. A listing always shows the properties
// it is sorted by, first if they were not picked.

// Bounds of what the console remembers of column choices: the columns of
// one kind, and the bytes of all choices together (past them, the oldest
// choices are forgotten all at once, as propTypes are).
const (
	maxChosenColumns = 200
	maxColumnsBytes  = 1 << 20
)

// columnsKey names a kind whose columns a person chose.
type columnsKey struct{ app, kind string }

// columnChoices is what the console remembers of column choices.
type columnChoices struct {
	byKind map[columnsKey][]string
	bytes  int
}

// chosenColumns returns the columns picked for a kind, if any.
func (c *console) chosenColumns(app, kind string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cols, ok := c.columns.byKind[columnsKey{app, kind}]
	return slices.Clone(cols), ok
}

// setColumns remembers the columns picked for a kind; nil forgets them.
func (c *console) setColumns(app, kind string, cols []string) {
	k := columnsKey{app, kind}
	size := len(app) + len(kind)
	for _, col := range cols {
		size += len(col)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.columns.byKind == nil {
		c.columns.byKind = make(map[columnsKey][]string)
	}
	if old, ok := c.columns.byKind[k]; ok {
		c.columns.bytes -= len(app) + len(kind)
		for _, col := range old {
			c.columns.bytes -= len(col)
		}
		delete(c.columns.byKind, k)
	}
	if cols == nil {
		return
	}
	if c.columns.bytes+size > maxColumnsBytes {
		clear(c.columns.byKind)
		c.columns.bytes = 0
	}
	c.columns.byKind[k] = cols
	c.columns.bytes += size
}

// columnRow is one property on the Columns form.
type columnRow struct {
	Name  string
	Shown bool
}

// arrangeColumns sets the listing's columns from the properties its
// results have (found), the person's choice if any, and its sort order:
// the properties the results are sorted by are shown, first if the
// choice left them out. It also lists what the Columns form offers: the
// shown columns in order, then every other property alphabetically.
func (k *kindPage) arrangeColumns(found []string, chosen []string, picked bool) {
	slices.Sort(found)
	cols := found
	if picked {
		cols = chosen
	}
	var sorts []string
	if k.ineq && k.FProp != keyProp && k.FProp != "" {
		sorts = append(sorts, k.FProp)
	}
	if k.Sort != "" && !slices.Contains(sorts, k.Sort) {
		sorts = append(sorts, k.Sort)
	}
	var first []string
	for _, s := range sorts {
		if !picked || !slices.Contains(cols, s) {
			first = append(first, s)
		}
	}
	k.Columns = append(first, slices.DeleteFunc(slices.Clone(cols), func(c string) bool { return slices.Contains(first, c) })...)
	k.Picked = picked
	k.ColumnForm = nil
	for _, c := range k.Columns {
		k.ColumnForm = append(k.ColumnForm, columnRow{c, true})
	}
	var rest []string
	for _, list := range [][]string{found, k.Properties} {
		for _, p := range list {
			if !slices.Contains(k.Columns, p) && !slices.Contains(rest, p) {
				rest = append(rest, p)
			}
		}
	}
	slices.Sort(rest)
	for _, p := range rest {
		k.ColumnForm = append(k.ColumnForm, columnRow{p, false})
	}
}

// postColumns saves the columns a person picked for a kind, or forgets
// them (reset), and returns to the listing.
func (c *console) postColumns(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	app, kind := f.Get("app"), f.Get("kind")
	back := f.Get("back")
	if !strings.HasPrefix(back, "/datastore/kind?") {
		back = "/datastore"
	}
	if app == "" || kind == "" {
		c.fail(w, r, http.StatusBadRequest, errNoKind)
		return
	}
	if f.Get("reset") != "" {
		c.setColumns(app, kind, nil)
		http.Redirect(w, r, back+sep(back)+"done=colsreset", http.StatusSeeOther)
		return
	}
	type pick struct {
		name string
		pos  int
	}
	var picks []pick
	n, _ := strconv.Atoi(f.Get("cols"))
	for i := range min(max(n, 0), maxListedProperties+maxChosenColumns) {
		is := strconv.Itoa(i)
		name := f.Get("c" + is)
		if name == "" || f.Get("s"+is) == "" || slices.ContainsFunc(picks, func(p pick) bool { return p.name == name }) {
			continue
		}
		pos, err := strconv.Atoi(strings.TrimSpace(f.Get("o" + is)))
		if err != nil {
			pos = 1 << 30 // no position: after the numbered ones, in form order
		}
		picks = append(picks, pick{name, pos})
	}
	if len(picks) > maxChosenColumns {
		c.fail(w, r, http.StatusBadRequest, errTooManyColumns)
		return
	}
	slices.SortStableFunc(picks, func(a, b pick) int { return cmp.Compare(a.pos, b.pos) })
	cols := make([]string, len(picks))
	for i, p := range picks {
		cols[i] = p.name
	}
	c.setColumns(app, kind, cols)
	http.Redirect(w, r, back+sep(back)+"done=colssaved", http.StatusSeeOther)
}
