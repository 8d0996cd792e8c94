package aelocal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// One entity: its page, the form that edits a value or adds a property,
// and the actions that remove a property or delete entities.

type entityPage struct {
	App, NS, Kind string
	Key, Path     string
	Parent        string // encoded key of the parent, "" for a root
	ParentPath    string
	Props         []propRow
	Ver           string
	Types         []string
	Back          string // the kind's listing
}

type propRow struct {
	Name   string
	Values []valueRow
}

type valueRow struct {
	Index   int
	Indexed bool
	V       valueView
	Size    int // bytes of a string or binary value
	Cut     int // bytes of it the entity's page leaves out
}

// How much of one value the entity's page shows: a page of several
// hundred kilobytes of text helps nobody, and the whole value is one
// click away (/datastore/value). Text is cut as the mail list cuts a
// body; binary values show as a hex dump of 32 lines.
const (
	entityTextShown   = 2000
	entityBinaryShown = 512
	entityLinesShown  = 40
)

// nthIndex is the index of the n-th c in s, or -1.
func nthIndex(s string, c byte, n int) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}

// cutForPage shortens the value's Display for the entity's page.
func (v *valueRow) cutForPage(raw []byte, hasRaw bool) {
	if !hasRaw {
		return
	}
	v.Size = len(raw)
	switch {
	case v.V.Type == "key":
	case v.V.Mono || binaryTypes[v.V.Type]:
		if len(raw) > entityBinaryShown {
			v.V.Display, v.V.Mono = showBytesN(raw, entityBinaryShown, false)
			v.Cut = len(raw) - entityBinaryShown
			if !v.V.Mono {
				v.Cut = len(raw) - len(v.V.Display)
			}
		}
	default:
		shown := v.V.Display
		if len(shown) > entityTextShown {
			shown, _ = cutText(shown, entityTextShown)
		}
		// Nor a column of thousands of short lines.
		if i := nthIndex(shown, '\n', entityLinesShown); i >= 0 {
			shown = shown[:i]
		}
		if len(shown) < len(v.V.Display) {
			v.V.Display, v.Cut = shown, len(v.V.Display)-len(shown)
		}
	}
}

// Binary reports whether the value is bytes shown as a hex dump or text.
func (v valueRow) Binary() bool { return v.V.Mono || binaryTypes[v.V.Type] }

// Shown is how many bytes of the value the page shows.
func (v valueRow) Shown() int { return v.Size - v.Cut }

// binaryTypes are the value types held as bytes that are not text.
var binaryTypes = map[string]bool{"bytes": true, "bytestring": true, "entity": true}

// rawValue returns the bytes of a string-held value of Property p.
func rawValue(p pmsg) ([]byte, bool) {
	v := p.Msg("value")
	if !v.Has("stringValue") {
		return nil, false
	}
	return []byte(v.Str("stringValue")), true
}

// entityVersion identifies an entity's content, so that an edit made from
// a stale form is refused instead of undoing a newer write.
func entityVersion(ep pmsg) string {
	b, _ := ep.Marshal()
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// propValues returns the values of property name in ep: the indexed ones
// first, in order, then the unindexed ones. Index i of the console means
// the i-th of these. Display is cut for the entity's page; Text is whole.
func propValues(ep pmsg, name string, sp nsKey) []valueRow {
	var out []valueRow
	for _, list := range []string{"property", "raw_property"} {
		for _, p := range ep.Msgs(list) {
			if p.Str("name") == name {
				row := valueRow{Index: len(out), Indexed: list == "property", V: viewValue(p, sp)}
				row.cutForPage(rawValue(p))
				out = append(out, row)
			}
		}
	}
	return out
}

// getEntity fetches the entity an encoded key names.
func (c *console) getEntity(key string) (ep pmsg, sp nsKey, path dsPath, err error) {
	ref, sp, path, err := decodeKey(key)
	if err != nil {
		return pmsg{}, sp, nil, err
	}
	out, err := c.s.consoleCall("datastore_v3", "Get", func(in pmsg) { in.AppendMsg("key").CopyFrom(ref) })
	if err != nil {
		return pmsg{}, sp, nil, err
	}
	if g := out.Msgs("entity"); len(g) == 1 && g[0].Has("entity") {
		return g[0].Msg("entity"), sp, path, nil
	}
	return pmsg{}, sp, path, errNoEntity(path)
}

type noEntityError struct{ path dsPath }

func (e noEntityError) Error() string {
	return fmt.Sprintf("there is no entity %s (it may have been deleted)", e.path)
}

func errNoEntity(path dsPath) error { return noEntityError{path} }

// kindLinks links an error page to the listing of the entity's kind,
// when the key named one.
func kindLinks(sp nsKey, path dsPath) []consoleLink {
	if len(path) == 0 {
		return nil
	}
	kind := path[len(path)-1].kind
	return []consoleLink{{"the list of " + kind, "/datastore/kind" + string(queryString("app", sp.app, "ns", sp.ns, "kind", kind))}}
}

// entityLinks links an error page to the entity, then its kind's list.
func entityLinks(ep pmsg, sp nsKey, path dsPath) []consoleLink {
	return append([]consoleLink{{"the entity " + pathText(path), "/datastore/entity" + string(queryString("key", encodeKey(ep.Msg("key"))))}}, kindLinks(sp, path)...)
}

func statusOf(err error) int {
	if errors.As(err, new(noEntityError)) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func (c *console) serveEntity(w http.ResponseWriter, r *http.Request) {
	ep, sp, path, err := c.getEntity(r.URL.Query().Get("key"))
	if err != nil {
		c.failBack(w, r, statusOf(err), err, kindLinks(sp, path))
		return
	}
	d := c.entityPageOf(ep, sp, path)
	c.render(w, r, http.StatusOK, "entity", &consolePage{Title: "Entity " + d.Path, Section: "Datastore", Data: d})
}

func (c *console) entityPageOf(ep pmsg, sp nsKey, path dsPath) *entityPage {
	d := &entityPage{
		App: sp.app, NS: sp.ns, Kind: path[len(path)-1].kind,
		Key: encodeKey(ep.Msg("key")), Path: pathText(path),
		Ver: entityVersion(ep), Types: valueTypes,
	}
	if len(path) > 1 {
		d.Parent = encodeKey(newRef(sp, path[:len(path)-1]))
		d.ParentPath = pathText(path[:len(path)-1])
	}
	var names []string
	for _, list := range []string{"property", "raw_property"} {
		for _, p := range ep.Msgs(list) {
			if n := p.Str("name"); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	for _, n := range names {
		d.Props = append(d.Props, propRow{Name: n, Values: propValues(ep, n, sp)})
	}
	d.Back = "/datastore/kind" + string(queryString("app", sp.app, "ns", sp.ns, "kind", d.Kind))
	return d
}

// serveValue answers with one value of a property whole, as plain text
// (text, string, and the like) or as bytes (bytes, bytestring, an
// embedded entity), for reading in the browser or, with download=1, as a
// file. The page's headers (nosniff, a CSP without script) keep the
// browser from running anything in it.
func (c *console) serveValue(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ep, sp, path, err := c.getEntity(q.Get("key"))
	if err != nil {
		c.failBack(w, r, statusOf(err), err, kindLinks(sp, path))
		return
	}
	prop := q.Get("prop")
	i, err := strconv.Atoi(q.Get("i"))
	vals := propValues(ep, prop, sp)
	if err != nil || i < 0 || i >= len(vals) {
		c.failBack(w, r, http.StatusNotFound, fmt.Errorf("entity %s has no value %s of property %q", path, q.Get("i"), prop), entityLinks(ep, sp, path))
		return
	}
	v := vals[i].V
	body, ext := []byte(v.Text), ".txt"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if vals[i].Binary() {
		body, _ = hex.DecodeString(v.Text) // these types' Text is hex
		ext = ".bin"
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if q.Get("download") != "" || ext == ".bin" {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fileName(prop) + ext}))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// fileName makes a property's name a safe file name.
func fileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || len(b) > 100 {
		return "value"
	}
	return string(b)
}

// The edit form: one value of one property, or a new property (Index -1).

type editPage struct {
	Key, Path, Kind string
	Prop            string
	Index           int
	Type, Value     string
	Indexed         bool
	Ver             string
	Types           []string
	Multiline       bool
	Count           int // values the property has now
}

func (c *console) serveEdit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ep, sp, path, err := c.getEntity(q.Get("key"))
	if err != nil {
		c.failBack(w, r, statusOf(err), err, kindLinks(sp, path))
		return
	}
	d := &editPage{Key: q.Get("key"), Path: pathText(path), Kind: path[len(path)-1].kind, Prop: q.Get("prop"), Index: -1, Type: "string", Indexed: true, Ver: entityVersion(ep), Types: valueTypes}
	if i, err := strconv.Atoi(q.Get("i")); err == nil {
		d.Index = i
	}
	vals := propValues(ep, d.Prop, sp)
	d.Count = len(vals)
	if d.Index >= 0 {
		if d.Index >= len(vals) {
			c.failBack(w, r, http.StatusNotFound, fmt.Errorf("entity %s has no value %d of property %q", path, d.Index, d.Prop), entityLinks(ep, sp, path))
			return
		}
		v := vals[d.Index]
		d.Type, d.Value, d.Indexed = v.V.Type, v.V.Text, v.Indexed
		if d.Type == "entity" {
			c.failBack(w, r, http.StatusBadRequest, errors.New("embedded entities cannot be edited in the console"), entityLinks(ep, sp, path))
			return
		}
	}
	d.Multiline = d.Type == "text" || d.Type == "bytes" || strings.Contains(d.Value, "\n") || len(d.Value) > 80
	c.render(w, r, http.StatusOK, "edit", &consolePage{Title: "Edit " + d.Prop, Section: "Datastore", Data: d})
}

func (c *console) postEdit(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	d := &editPage{
		Key: f.Get("key"), Prop: strings.TrimSpace(f.Get("prop")), Index: -1,
		Type: f.Get("type"), Value: f.Get("value"), Indexed: f.Get("indexed") != "",
		Ver: f.Get("ver"), Types: valueTypes,
	}
	if i, err := strconv.Atoi(f.Get("i")); err == nil {
		d.Index = i
	}
	d.Multiline = d.Type == "text" || d.Type == "bytes" || strings.Contains(d.Value, "\n") || len(d.Value) > 80
	page := &consolePage{Title: "Edit " + d.Prop, Section: "Datastore", Data: d}
	ep, sp, path, err := c.getEntity(d.Key)
	if err != nil {
		c.failBack(w, r, statusOf(err), err, kindLinks(sp, path))
		return
	}
	d.Path, d.Kind = pathText(path), path[len(path)-1].kind
	d.Count = len(propValues(ep, d.Prop, sp))
	failForm := func(status int, err error) {
		page.Error = err.Error()
		c.render(w, r, status, "edit", page)
	}
	if cur := entityVersion(ep); cur != d.Ver {
		d.Ver = cur // submitting again overwrites, knowingly
		failForm(http.StatusConflict, errors.New("the entity changed since this form was opened; check its current values (open it in another tab) and save again to overwrite"))
		return
	}
	prop, err := buildProperty(d.Prop, d.Type, d.Value, sp)
	if err != nil {
		failForm(http.StatusBadRequest, err)
		return
	}
	if unindexedTypes[d.Type] {
		d.Indexed = false
	}
	if err := setPropertyValue(ep, d.Prop, d.Index, &prop, d.Indexed); err != nil {
		failForm(http.StatusBadRequest, err)
		return
	}
	if err := c.putEntity(ep); err != nil {
		failForm(http.StatusBadRequest, err)
		return
	}
	redirect(w, r, "/datastore/entity", url.Values{"key": {d.Key}}, "saved")
}

// postDeleteProperty removes one value of a property (the form's i), or
// the whole property when the form names no value: on a list, the Remove
// of one item removes that item only.
func (c *console) postDeleteProperty(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	key, name := f.Get("key"), f.Get("prop")
	index := -1
	if i, err := strconv.Atoi(f.Get("i")); err == nil && i >= 0 {
		index = i
	}
	ep, sp, path, err := c.getEntity(key)
	if err != nil {
		c.failBack(w, r, statusOf(err), err, kindLinks(sp, path))
		return
	}
	if entityVersion(ep) != f.Get("ver") {
		c.failBack(w, r, http.StatusConflict, errors.New("the entity changed since the page was loaded; nothing was removed: reload it and try again"), entityLinks(ep, sp, path))
		return
	}
	if err := setPropertyValue(ep, name, index, nil, false); err != nil {
		c.failBack(w, r, http.StatusBadRequest, err, entityLinks(ep, sp, path))
		return
	}
	if err := c.putEntity(ep); err != nil {
		c.failBack(w, r, http.StatusBadRequest, err, entityLinks(ep, sp, path))
		return
	}
	done := "propdel"
	if index >= 0 && len(propValues(ep, name, nsKey{})) > 0 {
		done = "valuedel"
	}
	redirect(w, r, "/datastore/entity", url.Values{"key": {key}}, done)
}

// buildProperty makes a Property from a form's name, type and value.
func buildProperty(name, typ, text string, sp nsKey) (pmsg, error) {
	if name == "" {
		return pmsg{}, errors.New("a property needs a name")
	}
	p, err := newMsg("appengine.v2.Property")
	if err != nil {
		return pmsg{}, err
	}
	p.Set("name", name)
	p.Set("multiple", false)
	meaning, err := parseTypedValue(typ, text, p.Mutable("value"), sp)
	if err != nil {
		return pmsg{}, fmt.Errorf("property %s: %v", name, err)
	}
	if meaning != meaningNone {
		p.Set("meaning", meaning)
	}
	return p, nil
}

// setPropertyValue changes the values of property name in ep: with prop
// nil it removes value index, or every value if index is -1; with index
// -1 it appends prop as a new value; otherwise it replaces value index.
// A list that loses values stays a list (multiple), as the app wrote it. A replacement of the same type
// keeps the old value's meaning (a Python link stays a link).
func setPropertyValue(ep pmsg, name string, index int, prop *pmsg, indexed bool) error {
	type entry struct {
		p       pmsg
		indexed bool
	}
	var vals []entry
	multiple := false
	keep := map[string][]pmsg{}
	for _, list := range []string{"property", "raw_property"} {
		for _, p := range ep.Msgs(list) {
			if p.Str("name") == name {
				vals = append(vals, entry{p.Clone(), list == "property"})
				multiple = multiple || p.Bool("multiple")
			} else {
				keep[list] = append(keep[list], p.Clone())
			}
		}
	}
	switch {
	case prop == nil:
		switch {
		case len(vals) == 0:
			return fmt.Errorf("the entity has no property %q", name)
		case index >= len(vals):
			return fmt.Errorf("property %q has no value %d any more; reload the entity", name, index)
		case index >= 0:
			vals = slices.Delete(vals, index, index+1)
		default:
			vals = nil
		}
	case index < 0:
		vals = append(vals, entry{*prop, indexed})
	case index >= len(vals):
		return fmt.Errorf("property %q has no value %d any more; reload the entity", name, index)
	default:
		old := vals[index].p
		if viewValue(old, nsKey{}).Type == viewValue(*prop, nsKey{}).Type && old.Has("meaning") && !prop.Has("meaning") {
			prop.Set("meaning", old.Int("meaning"))
		}
		vals[index] = entry{*prop, indexed}
	}
	multiple = multiple || len(vals) > 1
	for _, list := range []string{"property", "raw_property"} {
		ep.Clear(list)
		for _, p := range keep[list] {
			ep.AppendMsg(list).CopyFrom(p)
		}
		for _, v := range vals {
			if v.indexed == (list == "property") {
				n := ep.AppendMsg(list)
				n.CopyFrom(v.p)
				n.Set("multiple", multiple)
			}
		}
	}
	return nil
}

// putEntity writes ep, whose key is complete.
func (c *console) putEntity(ep pmsg) error {
	_, err := c.s.consoleCall("datastore_v3", "Put", func(in pmsg) { in.AppendMsg("entity").CopyFrom(ep) })
	return err
}

// postDelete deletes the entities whose encoded keys the form lists, then
// returns to the page the form names.
func (c *console) postDelete(w http.ResponseWriter, r *http.Request) {
	keys := r.PostForm["key"]
	back := r.PostForm.Get("back")
	if !strings.HasPrefix(back, "/datastore") || strings.HasPrefix(back, "//") {
		back = "/datastore"
	}
	if len(keys) == 0 {
		http.Redirect(w, r, back+sep(back)+"done=nothingdel", http.StatusSeeOther)
		return
	}
	if len(keys) > maxDeleteKeys {
		c.fail(w, r, http.StatusBadRequest, fmt.Errorf("at most %d entities can be deleted at once", maxDeleteKeys))
		return
	}
	refs := make([]pmsg, len(keys))
	for i, k := range keys {
		ref, _, _, err := decodeKey(k)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, err)
			return
		}
		refs[i] = ref
	}
	_, err := c.s.consoleCall("datastore_v3", "Delete", func(in pmsg) {
		for _, ref := range refs {
			in.AppendMsg("key").CopyFrom(ref)
		}
	})
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	http.Redirect(w, r, back+sep(back)+"done=deleted", http.StatusSeeOther)
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}
