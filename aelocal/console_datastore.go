package aelocal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The datastore viewer: namespaces and kinds with counts, a kind's
// entities in pages, one entity, and forms to edit, create and delete.
// Everything goes through datastore_v3 calls (consoleCall), so the viewer
// sees exactly what a query of the app would.

// Page sizes a kind's listing offers.
var pageSizes = []int{20, 50, 100}

const (
	maxListedNamespaces = 1000
	// countBatch is how far one call of a count query skips; the
	// datastore skips at most 1000 results per call.
	countBatch = 1 << 30
)

var (
	errNoKind         = errors.New("no kind given: pick one on the datastore page")
	errTooManyColumns = fmt.Errorf("at most %d columns can be shown", maxChosenColumns)
)

// filterOps maps the operators of the filter form to datastore_v3's.
var filterOps = []struct{ Name, Symbol string }{
	{"eq", "="}, {"lt", "<"}, {"le", "<="}, {"gt", ">"}, {"ge", ">="},
}

var filterOpCodes = map[string]int64{"eq": opEqual, "lt": opLess, "le": opLessEq, "gt": opGreater, "ge": opGreatEq}

func (c *console) datastoreRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /datastore", c.serveDatastore)
	mux.HandleFunc("GET /datastore/kind", c.serveKind)
	mux.HandleFunc("GET /datastore/entity", c.serveEntity)
	mux.HandleFunc("GET /datastore/value", c.serveValue)
	mux.HandleFunc("GET /datastore/edit", c.serveEdit)
	mux.HandleFunc("GET /datastore/new", c.serveNew)
	c.post(mux, "/datastore/edit", c.postEdit)
	c.post(mux, "/datastore/delprop", c.postDeleteProperty)
	c.post(mux, "/datastore/delete", c.postDelete)
	c.post(mux, "/datastore/new", c.postNew)
	c.post(mux, "/datastore/columns", c.postColumns)
}

// datastoreApps lists the apps that have entities. No datastore_v3 call
// lists apps (every call names its own), so this is the one place the
// console reads the datastore's state directly.
func (s *Server) datastoreApps() []string {
	d := s.datastore
	d.mu.Lock()
	defer d.mu.Unlock()
	var apps []string
	for sp := range d.spaces {
		if !slices.Contains(apps, sp.app) {
			apps = append(apps, sp.app)
		}
	}
	slices.Sort(apps)
	return apps
}

// defaultApp is the app the viewer opens: the server's own
// GAE_APPLICATION if it has data or nothing has, else the first app with
// data.
func (c *console) defaultApp() string {
	own := os.Getenv("GAE_APPLICATION")
	if own == "" {
		own = DefaultAppID
	}
	apps := c.s.datastoreApps()
	if len(apps) == 0 || slices.Contains(apps, own) {
		return own
	}
	return apps[0]
}

// appAndNamespace reads ?app= and ?ns=.
func (c *console) appAndNamespace(r *http.Request) nsKey {
	q := r.URL.Query()
	app := q.Get("app")
	if app == "" {
		app = c.defaultApp()
	}
	return nsKey{app: app, ns: q.Get("ns")}
}

// Queries.

// runQuery runs the query fill describes and returns up to count results
// after skipping offset, and whether more follow. It skips and reads as
// many batches as that takes, and closes the datastore's cursor.
func (c *console) runQuery(fill func(q pmsg), offset, count int) (results []pmsg, more bool, err error) {
	results, more, _, err = c.query(fill, offset, count, false)
	return results, more, err
}

// count counts the results of the query fill describes.
func (c *console) count(fill func(q pmsg)) (int64, error) {
	_, _, n, err := c.query(func(q pmsg) {
		fill(q)
		q.Set("keys_only", true)
	}, 0, 0, true)
	return n, err
}

// query is runQuery that, if total is set, goes on skipping to the end
// and also returns how many results the query has in all. One query
// answers both: the datastore evaluates it once, and the batches after
// the first come from the results it holds for the open cursor.
func (c *console) query(fill func(q pmsg), offset, count int, total bool) (results []pmsg, more bool, n int64, err error) {
	out, err := c.s.consoleCall("datastore_v3", "RunQuery", func(q pmsg) {
		fill(q)
		q.Set("offset", min(offset, countBatch))
		q.Set("count", count)
	})
	if err != nil {
		return nil, false, 0, err
	}
	remaining := offset // results still to skip
	for {
		skipped := int(out.Int("skipped_results"))
		n += int64(skipped)
		remaining -= skipped
		if remaining <= 0 && len(results) < count {
			results = append(results, out.Msgs("result")...)
		}
		more = out.Bool("more_results")
		if !more || !out.Has("cursor") {
			break
		}
		reading := remaining > 0 || len(results) < count
		if !reading && !total {
			break
		}
		next, want := max(0, min(remaining, countBatch)), count-len(results)
		if !reading {
			// Past the page: count the rest by skipping it.
			next, want = countBatch, 0
		}
		cur := out.Msg("cursor")
		out, err = c.s.consoleCall("datastore_v3", "Next", func(q pmsg) {
			q.Mutable("cursor").CopyFrom(cur)
			q.Set("offset", next)
			q.Set("count", want)
		})
		if err != nil {
			return nil, false, 0, err
		}
	}
	n += int64(len(results))
	// more is about what follows the page; when counting, the loop ran
	// to the end, so say whether the count went past the page.
	if total {
		more = n > int64(offset+len(results))
	} else if more && out.Has("cursor") {
		cur := out.Msg("cursor")
		c.s.consoleCall("datastore_v3", "DeleteCursor", func(q pmsg) { q.CopyFrom(cur) })
	}
	return results, more, n, nil
}

// metaNames runs a metadata query (__namespace__, __kind__, or
// __property__ of the kind named by ancestor, /__kind__,KIND) and returns
// the names it lists.
func (c *console) metaNames(sp nsKey, kind string, ancestor dsPath, limit int) ([]string, bool, error) {
	res, more, err := c.runQuery(func(q pmsg) {
		kindQuery(sp, kind)(q)
		q.Set("keys_only", true)
		if ancestor != nil {
			writeRef(q.Mutable("ancestor"), sp.app, sp.ns, ancestor)
		}
	}, 0, limit)
	if err != nil {
		return nil, false, err
	}
	names := make([]string, len(res))
	for i, r := range res {
		path := refPath(r.Msg("key"))
		names[i] = path[len(path)-1].name // the default namespace has ID 1 and no name
	}
	return names, more, nil
}

// maxListedProperties bounds the properties a kind's page offers to sort
// and filter by.
const maxListedProperties = 1000

// kindProperties lists the indexed properties of a kind, sorted, with a
// __property__ query: the ones an order or a filter can use.
func (c *console) kindProperties(sp nsKey, kind string) ([]string, error) {
	names, _, err := c.metaNames(sp, "__property__", dsPath{{kind: "__kind__", name: kind}}, maxListedProperties)
	return names, err
}

// maxListedKinds bounds the kinds the datastore page counts and lists.
const maxListedKinds = 1000

func (c *console) kinds(app, ns string) ([]string, error) {
	names, _, err := c.metaNames(nsKey{app, ns}, "__kind__", nil, maxListedKinds)
	return names, err
}

// kindQuery fills the app, namespace and kind of a query.
func kindQuery(sp nsKey, kind string) func(q pmsg) {
	return func(q pmsg) {
		q.Set("app", sp.app)
		if sp.ns != "" {
			q.Set("name_space", sp.ns)
		}
		q.Set("kind", kind)
	}
}

// Pages.

// nameCount is a kind or a namespace with its number of entities.
type nameCount struct {
	Name  string
	Count int64
}

type datastorePage struct {
	App, NS    string
	Apps       []string
	Namespaces []nameCount
	MoreNS     bool
	Kinds      []nameCount
	MoreKinds  bool
	Total      int64
}

func (c *console) serveDatastore(w http.ResponseWriter, r *http.Request) {
	sp := c.appAndNamespace(r)
	d := datastorePage{App: sp.app, NS: sp.ns, Apps: c.s.datastoreApps()}
	page := &consolePage{Title: "Datastore", Section: "Datastore", Data: &d}
	fail := func(err error) {
		if page.Error == "" {
			page.Error = err.Error()
		}
	}
	kinds, err := c.kinds(sp.app, sp.ns)
	if err != nil {
		fail(err)
	}
	for _, k := range kinds {
		n, err := c.count(kindQuery(sp, k))
		if err != nil {
			fail(err)
			break
		}
		d.Kinds = append(d.Kinds, nameCount{k, n})
		d.Total += n
	}
	d.MoreKinds = len(kinds) == maxListedKinds
	names, more, err := c.metaNames(nsKey{app: sp.app}, "__namespace__", nil, maxListedNamespaces)
	if err != nil {
		fail(err)
	}
	d.MoreNS = more
	for _, ns := range names {
		n := d.Total // the namespace shown: its kinds add up to it
		if ns != sp.ns {
			// A kindless query counts every entity of a namespace.
			if n, err = c.count(kindQuery(nsKey{sp.app, ns}, "")); err != nil {
				fail(err)
			}
		}
		d.Namespaces = append(d.Namespaces, nameCount{ns, n})
	}
	c.render(w, r, http.StatusOK, "datastore", page)
}

// kindPage is a kind's listing: the query, one page of its results and
// what the forms offer.
type kindPage struct {
	App, NS, Kind string
	Sort          string // a property, or "" for the key
	Desc          bool
	FProp, FOp    string
	FVal, FType   string
	FTypeChosen   string // the form's type: "" for auto
	FTypeUsed     string // the type the filter's value was read as
	Offset, N     int
	Total         int64
	Order         string // the order of the results, in words; "" for by key
	Failed        bool   // the query failed: there are no results to speak of
	Columns       []string
	Picked        bool        // Columns are a person's choice
	ColumnForm    []columnRow // what the Columns form offers, in order
	ineq          bool        // the filter is an inequality
	Indexed       map[string]bool
	Properties    []string // every indexed property of the kind
	Rows          []entityRow
	More          bool
	Ops           []struct{ Name, Symbol string }
	Types         []string
	PageSizes     []int
	Back          string // this page's URL, for the delete form to return to
}

type entityRow struct {
	Key   string // encoded
	Path  string
	Cells []string
}

// Prev is the offset of the previous page, -1 on the first.
func (k *kindPage) Prev() int {
	if k.Offset == 0 {
		return -1
	}
	return max(0, k.Offset-k.N)
}

// End is the 1-based number of the last entity shown.
func (k *kindPage) End() int { return k.Offset + len(k.Rows) }

// Query is the URL of this listing with the parameters of pairs (name,
// value, ...) changed; an empty value removes one. It starts at the first
// page unless pairs set an offset.
func (k *kindPage) Query(pairs ...any) string {
	q := url.Values{}
	set := func(name, v string) {
		if v == "" || (name == "offset" && v == "0") || (name == "n" && v == strconv.Itoa(pageSizes[0])) {
			q.Del(name)
			return
		}
		q.Set(name, v)
	}
	set("app", k.App)
	set("ns", k.NS)
	set("kind", k.Kind)
	set("sort", k.Sort)
	if k.Desc {
		set("desc", "1")
	}
	if k.FProp != "" {
		set("fprop", k.FProp)
		set("fop", k.FOp)
		set("fval", k.FVal)
		set("ftype", k.FType)
	}
	set("n", strconv.Itoa(k.N))
	for i := 0; i+1 < len(pairs); i += 2 {
		set(fmt.Sprint(pairs[i]), fmt.Sprint(pairs[i+1]))
	}
	return "/datastore/kind?" + q.Encode()
}

// SortLink is the URL that sorts by prop, flipping the direction if the
// listing is sorted by it already.
func (k *kindPage) SortLink(prop string) string {
	if prop == keyProp {
		prop = ""
	}
	desc := ""
	if prop == k.Sort && !k.Desc {
		desc = "1"
	}
	return k.Query("sort", prop, "desc", desc)
}

// SortedBy reports whether the listing is sorted by prop, and how: "▲",
// "▼" or "".
func (k *kindPage) SortedBy(prop string) string {
	if prop == keyProp {
		prop = ""
	}
	switch {
	case prop != k.Sort:
		return ""
	case k.Desc:
		return "▼"
	}
	return "▲"
}

func (c *console) serveKind(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sp := c.appAndNamespace(r)
	k := &kindPage{
		App: sp.app, NS: sp.ns, Kind: q.Get("kind"),
		Sort: q.Get("sort"), Desc: q.Get("desc") != "",
		FProp: strings.TrimSpace(q.Get("fprop")), FOp: q.Get("fop"), FVal: q.Get("fval"), FType: q.Get("ftype"), FTypeChosen: q.Get("ftype"),
		N: pageSizes[0], Indexed: map[string]bool{},
		Ops: filterOps, Types: filterTypes, PageSizes: pageSizes,
	}
	if k.Sort == "__key__" {
		k.Sort = ""
	}
	if k.FOp == "" {
		k.FOp = "eq"
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && slices.Contains(pageSizes, n) {
		k.N = n
	}
	if off, err := strconv.Atoi(q.Get("offset")); err == nil && off > 0 {
		k.Offset = off
	}
	back := r.URL.Query()
	back.Del("done")
	k.Back = "/datastore/kind?" + back.Encode()
	page := &consolePage{Title: "Datastore: " + k.Kind, Section: "Datastore", Data: k}
	if k.Kind == "" {
		c.fail(w, r, http.StatusBadRequest, errNoKind)
		return
	}
	fill, err := c.kindFilter(sp, k)
	if err != nil {
		page.Error, k.Failed = err.Error(), true
		c.render(w, r, http.StatusBadRequest, "kind", page)
		return
	}
	// Every property an order or a filter can use, not just those of the
	// entities on this page. Without them, the page still offers its
	// columns.
	if k.Properties, err = c.kindProperties(sp, k.Kind); err != nil {
		page.Error = err.Error()
	}
	if k.Sort != "" && !slices.Contains(k.Properties, k.Sort) {
		k.Properties = append(k.Properties, k.Sort)
	}
	results, more, total, err := c.query(fill, k.Offset, k.N, true)
	k.Total = total
	if err != nil {
		page.Error, k.Failed = err.Error(), true
		c.render(w, r, http.StatusBadRequest, "kind", page)
		return
	}
	k.More = more
	cols := map[string]bool{}
	views := make([]map[string][]valueView, len(results))
	for i, e := range results {
		views[i] = map[string][]valueView{}
		for _, list := range []string{"property", "raw_property"} {
			for _, p := range e.Msgs(list) {
				name := p.Str("name")
				cols[name] = true
				if list == "property" {
					k.Indexed[name] = true
				}
				v := viewValue(p, sp)
				views[i][name] = append(views[i][name], v)
				if list == "property" {
					c.notePropertyType(sp, k.Kind, name, v.Type)
				}
			}
		}
	}
	found := make([]string, 0, len(cols))
	for name := range cols {
		found = append(found, name)
	}
	for _, p := range k.Properties {
		k.Indexed[p] = true
	}
	chosen, picked := c.chosenColumns(sp.app, k.Kind)
	k.arrangeColumns(found, chosen, picked)
	for i, e := range results {
		ref := e.Msg("key")
		row := entityRow{Key: encodeKey(ref), Path: pathText(refPath(ref))}
		for _, col := range k.Columns {
			vs := views[i][col]
			parts := make([]string, len(vs))
			for j, v := range vs {
				parts[j] = v.Short
			}
			cell := strings.Join(parts, ", ")
			if len(vs) > 1 {
				cell = "[" + cell + "]"
			}
			row.Cells = append(row.Cells, shorten(cell))
		}
		k.Rows = append(k.Rows, row)
	}
	c.render(w, r, http.StatusOK, "kind", page)
}

// kindFilter builds the query of a listing from its filter and sort.
func (c *console) kindFilter(sp nsKey, k *kindPage) (func(q pmsg), error) {
	base := kindQuery(sp, k.Kind)
	var val pmsg
	op := int64(0)
	if k.FProp != "" {
		var ok bool
		if op, ok = filterOpCodes[k.FOp]; !ok {
			return nil, fmt.Errorf("unknown filter operator %q", k.FOp)
		}
		typ := k.FType
		if k.FProp == keyProp {
			typ = "key"
		}
		if typ == "" {
			// Links to other pages carry the type found, so that
			// paging does not look for it again; the form still
			// offers "auto".
			typ = c.propertyType(sp, k.Kind, k.FProp, k.FVal)
			k.FType = typ
		}
		k.FTypeUsed = typ
		if !slices.Contains(filterTypes, typ) {
			return nil, fmt.Errorf("cannot filter on a value of type %q", typ)
		}
		val, _ = newMsg("appengine.v2.PropertyValue")
		if _, err := parseTypedValue(typ, k.FVal, val, sp); err != nil {
			return nil, fmt.Errorf("filter %s: %v", k.FProp, err)
		}
	}
	ineq := op != 0 && op != opEqual
	k.ineq = ineq
	k.Order = orderText(k, ineq)
	return func(q pmsg) {
		base(q)
		if op != 0 {
			f := q.AppendMsg("filter")
			f.Set("op", op)
			p := f.AppendMsg("property")
			p.Set("name", k.FProp)
			p.Set("multiple", false)
			p.Mutable("value").CopyFrom(val)
		}
		order := func(prop string, desc bool) {
			o := q.AppendMsg("order")
			o.Set("property", prop)
			o.Set("direction", map[bool]int64{false: 1, true: 2}[desc])
		}
		if ineq && k.FProp != k.Sort && !(k.FProp == keyProp && k.Sort == "") {
			order(k.FProp, false)
		}
		switch {
		case k.Sort != "":
			order(k.Sort, k.Desc)
		case k.Desc:
			order(keyProp, true)
		}
	}, nil
}

// orderText says in one sentence how the listing is ordered, the
// inequality filter's property first if the datastore puts it first.
func orderText(k *kindPage, ineq bool) string {
	sort := k.Sort
	if sort == "" {
		sort = "key"
	}
	dir := ""
	if k.Desc {
		dir = ", descending"
	}
	if ineq && k.FProp != k.Sort && !(k.FProp == keyProp && k.Sort == "") {
		return fmt.Sprintf("Sorted by %s, then by %s%s: the datastore sorts a query with an inequality filter by that property before any other order.", k.FProp, sort, dir)
	}
	if k.Sort == "" && !k.Desc {
		return ""
	}
	return fmt.Sprintf("Sorted by %s%s.", sort, dir)
}

// propertyType is the type a filter value gets when the form leaves it to
// the console: the type of prop in an entity that has it, or a guess from
// the text if none has.
func (c *console) propertyType(sp nsKey, kind, prop, text string) string {
	// A listing just shown usually told the type already.
	c.mu.Lock()
	t, ok := c.propTypes[propTypeKey{sp, kind, prop}]
	c.mu.Unlock()
	if ok {
		return t
	}
	res, _, err := c.runQuery(func(q pmsg) {
		kindQuery(sp, kind)(q)
		o := q.AppendMsg("order")
		o.Set("property", prop)
		o.Set("direction", int64(1))
	}, 0, 1)
	if err == nil && len(res) == 1 {
		for _, p := range res[0].Msgs("property") {
			if p.Str("name") == prop {
				if t := viewValue(p, sp).Type; slices.Contains(filterTypes, t) {
					c.notePropertyType(sp, kind, prop, t)
					return t
				}
			}
		}
	}
	return guessType(text)
}

// propTypeKey names a property of a kind, for the types the console has
// seen.
type propTypeKey struct {
	sp         nsKey
	kind, prop string
}

// maxPropTypes bounds what the console remembers of property types.
const maxPropTypes = 10000

// notePropertyType remembers the type an indexed property of a kind had
// on a page, so that a filter on it that leaves the type to the console
// needs no query to find it.
func (c *console) notePropertyType(sp nsKey, kind, prop, typ string) {
	if typ == "null" || !slices.Contains(filterTypes, typ) {
		return // a null says nothing about the property's other values
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.propTypes) >= maxPropTypes {
		clear(c.propTypes)
	}
	c.propTypes[propTypeKey{sp, kind, prop}] = typ
}
