package aelocal

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Queries are answered from the live data on every batch, so they are
// strongly consistent: RunQuery and each Next see every write committed
// before them. A query position (the cursor of an open query, and the
// compiled cursors handed to clients) is the sort values and key of the
// last entity passed, so a query resumes in order after any writes.

// Query batch sizes.
const (
	defaultBatch  = 20      // results per batch when the request sets neither count nor limit
	maxBatch      = 1000    // results per batch at most
	maxBatchBytes = 8 << 20 // encoded results per batch at most, past the first
	maxSkip       = 1000    // results skipped (offset) per batch at most, as in production
)

// Query filter operators (Query.Filter.Operator).
const (
	opLess    = 1
	opLessEq  = 2
	opGreater = 3
	opGreatEq = 4
	opEqual   = 5
	opIn      = 6
	opExists  = 7
)

const keyProp = "__key__"

// dsPropFilter is every filter on one property. An entity matches if each
// equality filter matches one of its values, and one of its values
// satisfies all the inequality filters at once, as with App Engine's
// indexes.
type dsPropFilter struct {
	prop  string
	eqs   []dsValue
	ineqs []dsIneq
}

type dsIneq struct {
	op int64
	v  dsValue
}

func (f *dsPropFilter) ineqOK(v dsValue) bool {
	for _, q := range f.ineqs {
		c := compareValue(v, q.v)
		switch q.op {
		case opLess:
			if c >= 0 {
				return false
			}
		case opLessEq:
			if c > 0 {
				return false
			}
		case opGreater:
			if c <= 0 {
				return false
			}
		case opGreatEq:
			if c < 0 {
				return false
			}
		}
	}
	return true
}

func (f *dsPropFilter) match(vals []dsValue) bool {
	if len(vals) == 0 {
		return false
	}
	for _, eq := range f.eqs {
		if !slices.ContainsFunc(vals, func(v dsValue) bool { return compareValue(v, eq) == 0 }) {
			return false
		}
	}
	if len(f.ineqs) == 0 {
		return true
	}
	return slices.ContainsFunc(vals, f.ineqOK)
}

type dsOrder struct {
	prop string
	desc bool
	key  bool // prop is __key__
}

// dsQuery is a parsed and checked Query.
type dsQuery struct {
	sp       nsKey
	kind     string
	meta     string // "__namespace__" or "__kind__" for those metadata queries
	ancestor dsPath
	filters  []*dsPropFilter
	byProp   map[string]*dsPropFilter
	orders   []dsOrder // the key order is implicit after these
	nProp    int       // orders on properties other than __key__
	keysOnly bool
}

// dsCand is an entity that matches a query, with its sort values (one per
// order, unused for __key__ orders).
type dsCand struct {
	e    *dsEntity
	vals []dsValue
}

// dsPos is a position in a query's order: just after (or, if inclusive,
// just before) the entity with these sort values and key. The zero dsPos is
// the start.
type dsPos struct {
	set       bool
	inclusive bool
	vals      []dsValue
	key       dsPath
}

func parseQuery(in pmsg) (*dsQuery, error) {
	app := in.Str("app")
	if app == "" {
		return nil, badRequest("query has no app")
	}
	switch {
	case in.Str("search_query") != "":
		return nil, badRequest("search queries are not supported by aelocal")
	case in.Len("property_name") > 0:
		return nil, badRequest("projection queries (Query.Project) are not supported by aelocal")
	case in.Len("group_by_property_name") > 0 || in.Bool("distinct"):
		return nil, badRequest("distinct queries (Query.Distinct, Query.DistinctOn) are not supported by aelocal")
	}
	q := &dsQuery{
		sp:       nsKey{app: app, ns: in.Str("name_space")},
		kind:     in.Str("kind"),
		byProp:   make(map[string]*dsPropFilter),
		keysOnly: in.Bool("keys_only"),
	}
	switch q.kind {
	case "__namespace__", "__kind__":
		q.meta = q.kind
	case "__property__":
		return nil, badRequest("metadata queries of kind __property__ are not supported by aelocal")
	}
	if in.Has("ancestor") {
		sp, path, err := parseKey(in.Msg("ancestor"), "query ancestor", false)
		if err != nil {
			return nil, err
		}
		if sp != q.sp {
			return nil, badRequest("query ancestor %s is in app %q namespace %q, but the query is in app %q namespace %q",
				path, sp.app, sp.ns, q.sp.app, q.sp.ns)
		}
		q.ancestor = path
	}

	ineqProp := ""
	for i, f := range in.Msgs("filter") {
		op := f.Int("op")
		switch op {
		case opLess, opLessEq, opGreater, opGreatEq, opEqual:
		case opIn:
			return nil, badRequest("filter %d: the IN operator is not supported by aelocal", i)
		case opExists:
			return nil, badRequest("filter %d: the EXISTS operator is not supported by aelocal", i)
		default:
			return nil, badRequest("filter %d: unknown operator %d", i, op)
		}
		props := f.Msgs("property")
		if len(props) != 1 {
			return nil, badRequest("filter %d has %d properties; want 1", i, len(props))
		}
		name := props[0].Str("name")
		if name == "" {
			return nil, badRequest("filter %d has an empty property name", i)
		}
		v := parseValue(props[0].Msg("value"))
		if name == keyProp && v.t != vRef {
			return nil, badRequest("filter %d: a __key__ filter needs a key value", i)
		}
		if q.kind == "" && name != keyProp {
			return nil, badRequest("kindless queries can only filter on __key__, not on %q", name)
		}
		pf := q.byProp[name]
		if pf == nil {
			pf = &dsPropFilter{prop: name}
			q.byProp[name] = pf
			q.filters = append(q.filters, pf)
		}
		if op == opEqual {
			pf.eqs = append(pf.eqs, v)
			continue
		}
		if ineqProp != "" && ineqProp != name {
			return nil, badRequest("only one inequality filter property per query is supported; this query has inequality filters on %q and %q", ineqProp, name)
		}
		ineqProp = name
		pf.ineqs = append(pf.ineqs, dsIneq{op, v})
	}

	for i, o := range in.Msgs("order") {
		name := o.Str("property")
		if name == "" {
			return nil, badRequest("sort order %d has an empty property name", i)
		}
		dir := o.Int("direction")
		if dir != 1 && dir != 2 {
			return nil, badRequest("sort order %d has unknown direction %d", i, dir)
		}
		if f := q.byProp[name]; name != keyProp && f != nil && len(f.eqs) > 0 {
			// Every result has the same value there, as in App Engine,
			// which drops such orders.
			continue
		}
		q.orders = append(q.orders, dsOrder{prop: name, desc: dir == 2, key: name == keyProp})
		if name == keyProp {
			break // keys are unique: later orders cannot matter
		}
	}
	if ineqProp != "" {
		if len(q.orders) == 0 {
			q.orders = []dsOrder{{prop: ineqProp, key: ineqProp == keyProp}}
		} else if q.orders[0].prop != ineqProp {
			return nil, badRequest("the first sort order must be on the property of the inequality filter, %q, not on %q", ineqProp, q.orders[0].prop)
		}
	}
	for _, o := range q.orders {
		if o.key {
			if q.kind == "" && o.desc {
				return nil, badRequest("kindless queries can only sort by __key__ ascending")
			}
			continue
		}
		if q.kind == "" {
			return nil, badRequest("kindless queries can only sort by __key__, not by %q", o.prop)
		}
		q.nProp++
	}
	return q, nil
}

// compare orders two entities, given their sort values and keys, by the
// query's orders and then by key.
func (q *dsQuery) compare(av []dsValue, ak dsPath, bv []dsValue, bk dsPath) int {
	for i, o := range q.orders {
		var c int
		if o.key {
			c = comparePath(ak, bk)
		} else {
			c = compareValue(av[i], bv[i])
		}
		if o.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return comparePath(ak, bk)
}

func (q *dsQuery) matches(e *dsEntity) bool {
	if q.ancestor != nil && !e.path.hasPrefix(q.ancestor) {
		return false
	}
	for _, f := range q.filters {
		if f.prop == keyProp {
			if !f.match([]dsValue{{t: vRef, ref: &dsRef{app: e.sp.app, ns: e.sp.ns, path: e.path}}}) {
				return false
			}
			continue
		}
		if !f.match(e.props[f.prop]) {
			return false
		}
	}
	return true
}

// sortVals returns the values e sorts by. An entity without a value of a
// sort property is not a result, as in App Engine. A multi-valued property
// sorts by its smallest value ascending and its largest descending, among
// the values that satisfy the inequality filters.
func (q *dsQuery) sortVals(e *dsEntity) ([]dsValue, bool) {
	if q.nProp == 0 {
		return nil, true
	}
	vals := make([]dsValue, len(q.orders))
	for i, o := range q.orders {
		if o.key {
			continue
		}
		f := q.byProp[o.prop]
		found := false
		for _, v := range e.props[o.prop] {
			if f != nil && !f.ineqOK(v) {
				continue
			}
			if !found {
				vals[i], found = v, true
				continue
			}
			c := compareValue(v, vals[i])
			if (!o.desc && c < 0) || (o.desc && c > 0) {
				vals[i] = v
			}
		}
		if !found {
			return nil, false
		}
	}
	return vals, true
}

// afterStart reports whether c comes after the start position p.
func (q *dsQuery) afterStart(c dsCand, p dsPos) bool {
	if !p.set {
		return true
	}
	x := q.compare(c.vals, c.e.path, p.vals, p.key)
	return x > 0 || (x == 0 && p.inclusive)
}

// beforeEnd reports whether c comes before the end position p.
func (q *dsQuery) beforeEnd(c dsCand, p dsPos) bool {
	if !p.set {
		return false
	}
	x := q.compare(c.vals, c.e.path, p.vals, p.key)
	return x < 0 || (x == 0 && !p.inclusive)
}

// parsePos reads a CompiledCursor made by writePos for the same query.
func (q *dsQuery) parsePos(cc pmsg, what string) (dsPos, error) {
	if !cc.Has("position") {
		return dsPos{}, nil
	}
	p := cc.Msg("position")
	if !p.Has("key") {
		if p.Str("start_key") != "" || p.Len("indexvalue") > 0 {
			return dsPos{}, badRequest("the %s cursor was not made by aelocal: it has no key position", what)
		}
		return dsPos{}, nil
	}
	sp, path, err := parseKey(p.Msg("key"), "the "+what+" cursor's key", false)
	if err != nil {
		return dsPos{}, err
	}
	if sp != q.sp {
		return dsPos{}, badRequest("the %s cursor does not match the query: it is for app %q namespace %q, the query for app %q namespace %q",
			what, sp.app, sp.ns, q.sp.app, q.sp.ns)
	}
	ivs := p.Msgs("indexvalue")
	if len(ivs) != q.nProp {
		return dsPos{}, badRequest("the %s cursor does not match the query: it was made for another sort order", what)
	}
	pos := dsPos{set: true, inclusive: p.Bool("start_inclusive"), key: path}
	if q.nProp > 0 {
		pos.vals = make([]dsValue, len(q.orders))
		j := 0
		for i, o := range q.orders {
			if o.key {
				continue
			}
			if ivs[j].Str("property") != o.prop {
				return dsPos{}, badRequest("the %s cursor does not match the query: it was made for another sort order", what)
			}
			pos.vals[i] = parseValue(ivs[j].Msg("value"))
			j++
		}
	}
	return pos, nil
}

// writePos fills an empty CompiledCursor.
func (q *dsQuery) writePos(cc pmsg, p dsPos) {
	if !p.set {
		return
	}
	pm := cc.Mutable("position")
	for i, o := range q.orders {
		if o.key {
			continue
		}
		iv := pm.AppendMsg("indexvalue")
		iv.Set("property", o.prop)
		writeValue(iv.Mutable("value"), p.vals[i])
	}
	writeRef(pm.Mutable("key"), q.sp.app, q.sp.ns, p.key)
	pm.Set("start_inclusive", p.inclusive)
}

// dsCursor is a running query: its position, the rest of its limit, and a
// cache of its remaining results valid while the data does not change.
type dsCursor struct {
	q         *dsQuery
	pos       dsPos
	end       *dsPos
	remaining int64  // of the limit; -1 without one
	view      dsView // what the query reads
	lastUsed  time.Time

	cached bool
	ver    uint64
	cands  []dsCand
	idx    int
}

func (d *datastoreService) dropCacheLocked(c *dsCursor) {
	if c.cached {
		d.cached -= len(c.cands)
		c.cached, c.cands, c.idx = false, nil, 0
	}
}

// versionLocked changes whenever the answer to q may change.
func (d *datastoreService) versionLocked(q *dsQuery) uint64 {
	if q.meta != "" {
		return d.seq
	}
	if s := d.spaces[q.sp]; s != nil {
		return s.version
	}
	return 0
}

// metaEntity makes the entity a metadata query returns.
func metaEntity(sp nsKey, kind, name string, id int64) *dsEntity {
	path := dsPath{{kind: kind, name: name, id: id}}
	ep, _ := newMsg("appengine.v2.EntityProto")
	writeRef(ep.Mutable("key"), sp.app, sp.ns, path)
	eg := ep.Mutable("entity_group").AppendMsg("element")
	eg.Set("type", kind)
	if name != "" {
		eg.Set("name", name)
	} else {
		eg.Set("id", id)
	}
	return &dsEntity{sp: sp, path: path, ep: ep, size: ep.Size()}
}

// evalLocked returns every result of q, as v sees the datastore, in order.
func (d *datastoreService) evalLocked(q *dsQuery, v dsView) []dsCand {
	var out []dsCand
	add := func(e *dsEntity) {
		if !q.matches(e) {
			return
		}
		if vals, ok := q.sortVals(e); ok {
			out = append(out, dsCand{e, vals})
		}
	}
	switch q.meta {
	case "__namespace__":
		for sp := range d.spaces {
			if sp.app != q.sp.app {
				continue
			}
			if sp.ns == "" {
				add(metaEntity(q.sp, q.meta, "", 1))
			} else {
				add(metaEntity(q.sp, q.meta, sp.ns, 0))
			}
		}
	case "__kind__":
		if s := d.spaces[q.sp]; s != nil {
			for kind := range s.kinds {
				add(metaEntity(q.sp, q.meta, kind, 0))
			}
		}
	default:
		d.eachLocked(v, q.sp, q.kind, add)
	}
	slices.SortFunc(out, func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) })
	return out
}

// remainingLocked returns c's results after its position, from its cache
// while the data has not changed since.
func (d *datastoreService) remainingLocked(c *dsCursor) []dsCand {
	ver := d.viewVersionLocked(c.view, c.q)
	if c.cached && c.ver == ver {
		return c.cands[c.idx:]
	}
	d.dropCacheLocked(c)
	all := d.evalLocked(c.q, c.view)
	lo := sort.Search(len(all), func(i int) bool { return c.q.afterStart(all[i], c.pos) })
	hi := len(all)
	if c.end != nil {
		hi = sort.Search(len(all), func(i int) bool { return !c.q.beforeEnd(all[i], *c.end) })
	}
	hi = max(hi, lo)
	list := all[lo:hi]
	if d.cached+len(list) <= maxCachedResults {
		c.cached, c.ver, c.cands, c.idx = true, ver, list, 0
		d.cached += len(list)
	}
	return list
}

// batchLocked advances c: it skips up to offset results, then takes up to
// count. more reports whether results remain that the query may return or
// skip.
func (d *datastoreService) batchLocked(c *dsCursor, offset, count int64) (res []*dsEntity, skipped int64, more bool) {
	list := d.remainingLocked(c)
	skipped = min(offset, maxSkip, int64(len(list)))
	n := min(count, int64(len(list))-skipped)
	if offset > skipped {
		n = 0 // results start only once the whole offset is skipped
	}
	if c.remaining >= 0 {
		n = min(n, c.remaining)
	}
	res = make([]*dsEntity, 0, n)
	bytes := 0
	for _, x := range list[skipped : skipped+n] {
		size := x.e.size
		if c.q.keysOnly {
			size = x.e.ep.Msg("key").Size()
		}
		if len(res) > 0 && bytes+size > maxBatchBytes {
			break
		}
		bytes += size
		res = append(res, x.e)
	}
	n = int64(len(res))
	consumed := skipped + n
	if consumed > 0 {
		last := list[consumed-1]
		c.pos = dsPos{set: true, vals: last.vals, key: last.e.path}
		if c.cached {
			c.idx += int(consumed)
		}
	}
	if c.remaining >= 0 {
		c.remaining -= n
	}
	more = consumed < int64(len(list)) && (offset > skipped || c.remaining != 0)
	return res, skipped, more
}

// fillResult writes a QueryResult.
func fillResult(out pmsg, q *dsQuery, res []*dsEntity, skipped int64, more bool, handle uint64, compile bool, pos dsPos) {
	if more {
		c := out.Mutable("cursor")
		c.Set("cursor", handle)
		c.Set("app", q.sp.app)
	}
	for _, e := range res {
		r := out.AppendMsg("result")
		if q.keysOnly {
			r.Mutable("key").CopyFrom(e.ep.Msg("key"))
			r.Mutable("entity_group").CopyFrom(e.ep.Msg("entity_group"))
		} else {
			r.CopyFrom(e.ep)
		}
	}
	out.Set("skipped_results", skipped)
	out.Set("more_results", more)
	out.Set("keys_only", q.keysOnly)
	if compile {
		q.writePos(out.Mutable("compiled_cursor"), pos)
	}
}

// batchSize reads the count of a RunQuery or Next request.
func batchSize(in pmsg, dflt int64) (int64, error) {
	if !in.Has("count") {
		return min(dflt, maxBatch), nil
	}
	n := in.Int("count")
	if n < 0 {
		return 0, badRequest("negative count %d", n)
	}
	return min(n, maxBatch), nil
}

func dsRunQuery(s *Server, in, out pmsg) error {
	d := s.datastore
	q, err := parseQuery(in)
	if err != nil {
		return err
	}
	offset := in.Int("offset")
	if offset < 0 {
		return badRequest("negative offset %d", offset)
	}
	c := &dsCursor{q: q, remaining: -1}
	dflt := int64(defaultBatch)
	if in.Has("limit") {
		if c.remaining = in.Int("limit"); c.remaining < 0 {
			return badRequest("negative limit %d", c.remaining)
		}
		dflt = c.remaining
	}
	count, err := batchSize(in, dflt)
	if err != nil {
		return err
	}
	if in.Has("compiled_cursor") {
		if c.pos, err = q.parsePos(in.Msg("compiled_cursor"), "start"); err != nil {
			return err
		}
	}
	if in.Has("end_compiled_cursor") {
		end, err := q.parsePos(in.Msg("end_compiled_cursor"), "end")
		if err != nil {
			return err
		}
		c.end = &end
	}

	d.mu.Lock()
	if in.Has("transaction") {
		tx, h, err := d.txLocked(in.Msg("transaction"))
		if err == nil && q.ancestor == nil {
			err = badRequest("only ancestor queries are allowed inside transactions")
		}
		if err == nil {
			err = d.touchLocked(tx, q.sp, q.ancestor)
		}
		if err != nil {
			d.mu.Unlock()
			return err
		}
		c.view = dsView{tx: h, snap: tx.snap}
	}
	now := d.now()
	res, skipped, more := d.batchLocked(c, offset, count)
	var h uint64
	if more {
		d.sweepLocked(now)
		d.handle++
		h = d.handle
		c.lastUsed = now
		d.cursors[h] = c
	} else {
		d.dropCacheLocked(c)
	}
	pos := c.pos
	d.mu.Unlock()

	fillResult(out, q, res, skipped, more, h, in.Bool("compile"), pos)
	return nil
}

func dsNext(s *Server, in, out pmsg) error {
	d := s.datastore
	h := in.Msg("cursor").Uint("cursor")
	offset := in.Int("offset")
	if offset < 0 {
		return badRequest("negative offset %d", offset)
	}
	count, err := batchSize(in, defaultBatch)
	if err != nil {
		return err
	}
	d.mu.Lock()
	c := d.cursors[h]
	if c == nil {
		d.mu.Unlock()
		return badRequest("query cursor %d is unknown: the query ended or its cursor expired (resume from a compiled cursor, Iterator.Cursor, instead)", h)
	}
	res, skipped, more := d.batchLocked(c, offset, count)
	if more {
		c.lastUsed = d.now()
	} else {
		d.dropCursorLocked(h)
	}
	pos, q := c.pos, c.q
	d.mu.Unlock()

	fillResult(out, q, res, skipped, more, h, in.Bool("compile"), pos)
	return nil
}

func dsDeleteCursor(s *Server, in, out pmsg) error {
	d := s.datastore
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropCursorLocked(in.Uint("cursor"))
	return nil
}

// Keys and property values, parsed once from the protobuf messages at write
// time, so that queries compare plain Go values.

// dsElem is one element of a key path. An element with neither id nor name
// is incomplete.
type dsElem struct {
	kind string
	id   int64
	name string
}

func (e dsElem) complete() bool { return e.id != 0 || e.name != "" }

// dsPath is a key path, root first.
type dsPath []dsElem

// encode returns a string that identifies the path unambiguously, for use
// as a map key.
func (p dsPath) encode() string {
	var b strings.Builder
	var tmp [binary.MaxVarintLen64]byte
	for _, e := range p {
		b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(e.kind)))])
		b.WriteString(e.kind)
		if e.name != "" {
			b.WriteByte('n')
			b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(e.name)))])
			b.WriteString(e.name)
		} else {
			b.WriteByte('i')
			b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(e.id))])
		}
	}
	return b.String()
}

// String renders the path for error messages, as /Kind,id/Kind,"name".
func (p dsPath) String() string {
	var b strings.Builder
	for _, e := range p {
		b.WriteByte('/')
		b.WriteString(e.kind)
		b.WriteByte(',')
		switch {
		case e.name != "":
			b.WriteString(quoteShort(e.name))
		case e.id != 0:
			b.WriteString(strconv.FormatInt(e.id, 10))
		default:
			b.WriteString("<incomplete>")
		}
	}
	return b.String()
}

// quoteShort quotes s for an error message, shortening very long names.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return `"` + strings.ToValidUTF8(s[:max], "?") + `..."`
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// hasPrefix reports whether anc is p itself or an ancestor of p.
func (p dsPath) hasPrefix(anc dsPath) bool {
	if len(anc) > len(p) {
		return false
	}
	for i := range anc {
		if p[i] != anc[i] {
			return false
		}
	}
	return true
}

// comparePath orders keys as App Engine does: element by element, by kind,
// then integer IDs (numerically) before names (bytewise); an ancestor sorts
// before its descendants.
func comparePath(a, b dsPath) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if c := strings.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		switch {
		case x.name == "" && y.name == "":
			if c := cmp.Compare(x.id, y.id); c != 0 {
				return c
			}
		case x.name == "":
			return -1
		case y.name == "":
			return 1
		default:
			if c := strings.Compare(x.name, y.name); c != 0 {
				return c
			}
		}
	}
	return cmp.Compare(len(a), len(b))
}

// Value types in App Engine's cross-type sort order. A time is an int64 of
// microseconds (meaning GD_WHEN) and so sorts with the integers; blobs and
// byte strings are strings.
const (
	vNull = iota
	vInt
	vBool
	vString
	vDouble
	vPoint
	vUser
	vRef
)

// dsValue is one indexed property value.
type dsValue struct {
	t    int8
	i    int64   // vInt; vBool as 0 or 1
	s    string  // vString; vUser email
	s2   string  // vUser auth domain
	f, g float64 // vDouble in f; vPoint as x, y
	ref  *dsRef  // vRef
}

// dsRef is a reference value (a key).
type dsRef struct {
	app, ns string
	path    dsPath
}

func compareFloat(a, b float64) int {
	// NaN sorts before every other double and equals itself, so that the
	// order stays total.
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	return cmp.Compare(a, b)
}

func compareValue(a, b dsValue) int {
	if a.t != b.t {
		return cmp.Compare(a.t, b.t)
	}
	switch a.t {
	case vInt, vBool:
		return cmp.Compare(a.i, b.i)
	case vString:
		return strings.Compare(a.s, b.s)
	case vDouble:
		return compareFloat(a.f, b.f)
	case vPoint:
		if c := compareFloat(a.f, b.f); c != 0 {
			return c
		}
		return compareFloat(a.g, b.g)
	case vUser:
		if c := strings.Compare(a.s, b.s); c != 0 {
			return c
		}
		return strings.Compare(a.s2, b.s2)
	case vRef:
		if c := strings.Compare(a.ref.app, b.ref.app); c != 0 {
			return c
		}
		if c := strings.Compare(a.ref.ns, b.ref.ns); c != 0 {
			return c
		}
		return comparePath(a.ref.path, b.ref.path)
	}
	return 0
}

// parseValue reads a PropertyValue. A value with nothing set is null.
func parseValue(v pmsg) dsValue {
	switch {
	case v.Has("int64Value"):
		return dsValue{t: vInt, i: v.Int("int64Value")}
	case v.Has("booleanValue"):
		var i int64
		if v.Bool("booleanValue") {
			i = 1
		}
		return dsValue{t: vBool, i: i}
	case v.Has("stringValue"):
		return dsValue{t: vString, s: v.Str("stringValue")}
	case v.Has("doubleValue"):
		return dsValue{t: vDouble, f: v.Float("doubleValue")}
	case v.Has("pointvalue"):
		p := v.Msg("pointvalue")
		return dsValue{t: vPoint, f: p.Float("x"), g: p.Float("y")}
	case v.Has("uservalue"):
		u := v.Msg("uservalue")
		return dsValue{t: vUser, s: u.Str("email"), s2: u.Str("auth_domain")}
	case v.Has("referencevalue"):
		r := v.Msg("referencevalue")
		els := r.Msgs("pathelement")
		path := make(dsPath, len(els))
		for i, e := range els {
			path[i] = dsElem{kind: e.Str("type"), id: e.Int("id"), name: e.Str("name")}
		}
		return dsValue{t: vRef, ref: &dsRef{app: r.Str("app"), ns: r.Str("name_space"), path: path}}
	}
	return dsValue{t: vNull}
}

// writeValue fills an empty PropertyValue.
func writeValue(v pmsg, x dsValue) {
	switch x.t {
	case vInt:
		v.Set("int64Value", x.i)
	case vBool:
		v.Set("booleanValue", x.i != 0)
	case vString:
		v.Set("stringValue", x.s)
	case vDouble:
		v.Set("doubleValue", x.f)
	case vPoint:
		p := v.Mutable("pointvalue")
		p.Set("x", x.f)
		p.Set("y", x.g)
	case vUser:
		u := v.Mutable("uservalue")
		u.Set("email", x.s)
		u.Set("auth_domain", x.s2)
	case vRef:
		r := v.Mutable("referencevalue")
		r.Set("app", x.ref.app)
		if x.ref.ns != "" {
			r.Set("name_space", x.ref.ns)
		}
		for _, e := range x.ref.path {
			pe := r.AppendMsg("pathelement")
			pe.Set("type", e.kind)
			if e.name != "" {
				pe.Set("name", e.name)
			} else if e.id != 0 {
				pe.Set("id", e.id)
			}
		}
	}
}

// writeRef fills an empty Reference.
func writeRef(r pmsg, app, ns string, path dsPath) {
	r.Set("app", app)
	if ns != "" {
		r.Set("name_space", ns)
	}
	p := r.Mutable("path")
	for _, e := range path {
		pe := p.AppendMsg("element")
		pe.Set("type", e.kind)
		if e.name != "" {
			pe.Set("name", e.name)
		} else if e.id != 0 {
			pe.Set("id", e.id)
		}
	}
}
