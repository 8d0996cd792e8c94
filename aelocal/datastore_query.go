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
		if !ineqHolds(q.op, compareValue(v, q.v)) {
			return false
		}
	}
	return true
}

// ineqHolds reports whether a value that compares c (as compareValue)
// with an inequality filter's value passes the filter's operator op.
func ineqHolds(op int64, c int) bool {
	switch op {
	case opLess:
		return c < 0
	case opLessEq:
		return c <= 0
	case opGreater:
		return c > 0
	case opGreatEq:
		return c >= 0
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
	meta     string // "__namespace__", "__kind__" or "__property__" for those metadata queries
	ancestor dsPath
	filters  []*dsPropFilter
	byProp   map[string]*dsPropFilter
	orders   []dsOrder // the key order is implicit after these
	nProp    int       // orders on properties other than __key__
	keysOnly bool
	proj     []string // projected properties (Query.Project), in request order
	groupBy  []string // group_by_property_name (Query.Distinct, Query.DistinctOn)
	start    dsPos    // the start cursor's position

	// A query of the Cloud API's OR, IN, != or NOT_IN filters
	// (datastore_disjunction.go): its conjunctions, each a query of its
	// own with q's orders, or for a branch its query and its index there.
	branches []*dsQuery
	union    *dsQuery
	ord      int
	in       pmsg // the datastore_v3 Query parsed, for its composite index
}

// dsCand is a result of a query: an entity that matches it, with its sort
// values (one per order, unused for __key__ orders). A projection query has
// a result per index entry, so an entity may appear once per combination of
// the values of its ordered properties; vals holds that combination.
type dsCand struct {
	e    *dsEntity
	vals []dsValue
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
	if q.branches != nil {
		return q.matchesUnion(e)
	}
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
		if !f.match(e.props.get(f.prop)) {
			return false
		}
	}
	return true
}

// sortVals returns the values e sorts by: those of its first index entry.
// An entity without a value of a sort property is not a result, as in App
// Engine. A multi-valued property sorts by its smallest value ascending and
// its largest descending, among the values that satisfy the filters on it.
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
		for _, v := range e.props.get(o.prop) {
			if f != nil && !f.valueOK(v) {
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

// dsCursor is a running query: its position in the query's order (an
// index position, which each batch seeks to) and the rest of its limit. It
// holds no results: each batch reads the indexes from its position on.
type dsCursor struct {
	q         *dsQuery
	pos       dsPos
	end       *dsPos
	remaining int64    // of the limit; -1 without one
	view      dsView   // what the query reads
	comp      *dsIndex // the composite index that serves q, if any (datastore_index_comp.go)
	lastUsed  time.Time

	busy bool // a batch reads the indexes without the lock (datastore_plan.go)
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

// evalLocked returns every result of q, as v sees the datastore, in order.
func (d *datastoreService) evalLocked(q *dsQuery, v dsView) ([]dsCand, error) {
	var out []dsCand
	var err error
	add := func(e *dsEntity) {
		d.stats.loaded++
		if err == nil && q.matches(e) {
			out, err = q.appendResults(out, e)
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
			for kind := range s.idx {
				add(metaEntity(q.sp, q.meta, kind, 0))
			}
		}
	case "__property__":
		d.propertyEntitiesLocked(q, add)
	default:
		d.eachLocked(v, q.sp, q.kind, q.ancestor, add)
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) })
	if len(q.groupBy) > 0 {
		out = q.distinct(out)
	}
	return out, nil
}

// remainingLocked returns c's results after its position by the full
// evaluation: for the queries the planner does not read from the live
// indexes, those of a transaction (which read its snapshot of the
// ancestor's range of the kind index, eachLocked) and metadata queries
// (which read the namespaces, kinds and the indexes' property ranges,
// datastore_metadata.go). Both cost the size of an entity group or of
// the schema, not of a kind, so a batch evaluates them again rather than
// keep results between batches.
func (d *datastoreService) remainingLocked(c *dsCursor) ([]dsCand, error) {
	d.evaluated++
	all, err := d.evalLocked(c.q, c.view)
	if err != nil {
		return nil, err
	}
	lo := sort.Search(len(all), func(i int) bool { return c.q.afterStart(all[i], c.pos) })
	hi := len(all)
	if c.end != nil {
		hi = sort.Search(len(all), func(i int) bool { return !c.q.beforeEnd(all[i], *c.end) })
	}
	hi = max(hi, lo)
	return all[lo:hi], nil
}

// batchLocked advances c: it skips up to offset results, then takes up to
// count. more reports whether results remain that the query may return or
// skip.
func (d *datastoreService) batchLocked(c *dsCursor, offset, count int64) (res []dsCand, skipped int64, more bool, err error) {
	var list []dsCand
	if p := d.planFor(c); p != nil {
		// The results this batch may skip or return, and one more to
		// tell whether more remain: the same answer as below from the
		// first entries of the indexes (datastore_plan.go).
		n := min(count, maxBatch)
		if c.remaining >= 0 {
			n = min(n, c.remaining)
		}
		d.planned++
		if p.ties {
			d.tiesRead++
		}
		if r := d.planReadLocked(c, p); r != nil {
			// The read needs no lock, so writes need not wait for it.
			// c is busy meanwhile: no other Next may move it.
			c.busy = true
			d.mu.Unlock()
			list, err = r.read(min(offset, maxSkip) + n + 1)
			d.mu.Lock()
			c.busy = false
			d.stats.entries += r.entries
			if r.build != nil {
				d.spaces[c.q.sp].finishBuildLocked(r.build)
				if r.comp == nil {
					d.stats.compFallback++
				}
			}
			if r.comp != nil {
				d.stats.comp++
			}
		}
	} else {
		list, err = d.remainingLocked(c)
	}
	if err != nil {
		return nil, 0, false, err
	}
	skipped = min(offset, maxSkip, int64(len(list)))
	n := min(count, int64(len(list))-skipped)
	if offset > skipped {
		n = 0 // results start only once the whole offset is skipped
	}
	if c.remaining >= 0 {
		n = min(n, c.remaining)
	}
	res = make([]dsCand, 0, n)
	bytes := 0
	for _, x := range list[skipped : skipped+n] {
		size := x.e.size()
		if c.q.keysOnly || len(c.q.proj) > 0 {
			size = x.e.keySize()
		}
		if len(res) > 0 && bytes+size > maxBatchBytes {
			break
		}
		bytes += size
		res = append(res, x)
	}
	n = int64(len(res))
	if !c.q.keysOnly && len(c.q.proj) == 0 {
		d.stats.loaded += n
	}
	consumed := skipped + n
	if consumed > 0 {
		c.pos = c.q.posAfter(list[consumed-1])
	}
	if c.remaining >= 0 {
		c.remaining -= n
	}
	more = consumed < int64(len(list)) && (offset > skipped || c.remaining != 0)
	return res, skipped, more, nil
}

// fillResult writes a QueryResult.
func fillResult(out pmsg, q *dsQuery, res []dsCand, skipped int64, more bool, handle uint64, compile bool, pos dsPos) {
	if more {
		c := out.Mutable("cursor")
		c.Set("cursor", handle)
		c.Set("app", q.sp.app)
	}
	for _, x := range res {
		r := out.AppendMsg("result")
		switch {
		case len(q.proj) > 0:
			q.writeProjected(r, x)
		case q.keysOnly:
			r.Mutable("key").CopyFrom(x.e.keyMsg())
			r.Mutable("entity_group").CopyFrom(x.e.groupMsg())
		default:
			x.e.answerInto(r)
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

func dsRunQuery(s *Server, in, out pmsg) error { return runQuery(s, in, out, true) }

// runQuery answers RunQuery. Without checkIndexes the query's composite
// index is neither recorded nor required: the console's queries use it,
// since they are a person browsing, not the app's.
func runQuery(s *Server, in, out pmsg, checkIndexes bool) error {
	b, err := s.datastore.firstBatch(in, checkIndexes, true)
	if err != nil {
		return err
	}
	fillResult(out, b.q, b.res, b.skipped, b.more, b.h, in.Bool("compile"), b.pos)
	return nil
}

// queryBatch is the first batch of a query's results.
type queryBatch struct {
	q       *dsQuery
	res     []dsCand
	skipped int64
	more    bool
	h       uint64 // the open cursor's handle, if more and it was kept
	pos     dsPos  // the position after the batch
}

// firstBatch runs the Query in and returns its first batch. With
// keepCursor, a query with more results keeps an open cursor for Next
// (datastore_v3); without, it keeps nothing, and the caller resumes from
// the batch's position (the Cloud API's cursors). Both APIs run their
// queries here.
func (d *datastoreService) firstBatch(in pmsg, checkIndexes, keepCursor bool) (*queryBatch, error) {
	return d.firstBatchOf(in, nil, checkIndexes, keepCursor)
}

// firstBatchOf is firstBatch of a query with the Cloud API's filter tree
// f (nil: in's filters only; parseFilteredQuery).
func (d *datastoreService) firstBatchOf(in pmsg, f *dsFilter, checkIndexes, keepCursor bool) (*queryBatch, error) {
	q, err := parseFilteredQuery(in, f)
	if err != nil {
		return nil, err
	}
	if checkIndexes {
		if err := d.indexes.checkFiltered(q); err != nil {
			return nil, err
		}
	}
	offset := in.Int("offset")
	if offset < 0 {
		return nil, badRequest("negative offset %d", offset)
	}
	c := &dsCursor{q: q, remaining: -1, comp: d.indexes.serving(q)}
	dflt := int64(defaultBatch)
	if in.Has("limit") {
		if c.remaining = in.Int("limit"); c.remaining < 0 {
			return nil, badRequest("negative limit %d", c.remaining)
		}
		dflt = c.remaining
	}
	count, err := batchSize(in, dflt)
	if err != nil {
		return nil, err
	}
	if in.Has("compiled_cursor") {
		if q.start, err = q.parsePos(in.Msg("compiled_cursor"), "start"); err != nil {
			return nil, err
		}
		c.pos = q.start
	}
	if in.Has("end_compiled_cursor") {
		end, err := q.parsePos(in.Msg("end_compiled_cursor"), "end")
		if err != nil {
			return nil, err
		}
		c.end = &end
	}

	d.mu.Lock()
	if in.Has("transaction") {
		if err := d.txCursorLocked(c, in.Msg("transaction")); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	now := d.now()
	res, skipped, more, err := d.batchLocked(c, offset, count)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	var h uint64
	if more && keepCursor {
		d.sweepLocked(now)
		d.handle++
		h = d.handle
		c.lastUsed = now
		d.cursors[h] = c
	}
	pos := c.pos
	d.mu.Unlock()
	return &queryBatch{q: q, res: res, skipped: skipped, more: more, h: h, pos: pos}, nil
}

// txCursorLocked makes c's query read through the transaction t names,
// by the rules of a query in a transaction (txQueryLocked, for both APIs
// and aggregations).
func (d *datastoreService) txCursorLocked(c *dsCursor, t pmsg) error {
	tx, h, err := d.txLocked(t)
	if err == nil {
		err = d.txQueryLocked(tx, c.q) // datastore_txquery.go
	}
	if err != nil {
		return err
	}
	c.view = dsView{tx: h, snap: tx.snap}
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
	if c.busy {
		// An iterator is not safe for concurrent use; production would
		// serialize the calls, aelocal refuses the second.
		d.mu.Unlock()
		return badRequest("query cursor %d is busy: another Next call on it has not returned", h)
	}
	if c.view.tx != 0 {
		// A query of a transaction keeps it in use, and ends with it
		// (ending it drops its cursors).
		if _, err := d.useTxLocked(c.view.tx); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	res, skipped, more, err := d.batchLocked(c, offset, count)
	if err != nil {
		d.mu.Unlock()
		return err
	}
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

// dsValue is one indexed property value. Every stored entity holds one
// per indexed value, so it is kept to 40 bytes (issue 25, item 4): a
// double keeps its bits in i, and the second halves of the rare points
// and users live behind ref (use the constructors and accessors below).
type dsValue struct {
	t   int8
	i   int64  // vInt; vBool as 0 or 1; vDouble, and vPoint's x, as math.Float64bits
	s   string // vString; vUser email
	ref *dsRef // vRef; vPoint's y and vUser's auth domain
}

// dsRef is a reference value (a key); for a point or a user value, only
// y or auth is set.
type dsRef struct {
	app, ns string
	path    dsPath
	y       float64 // vPoint
	auth    string  // vUser
}

// doubleValue, pointValue and userValue make values of those types.
func doubleValue(f float64) dsValue {
	return dsValue{t: vDouble, i: int64(math.Float64bits(f))}
}

func pointValue(x, y float64) dsValue {
	return dsValue{t: vPoint, i: int64(math.Float64bits(x)), ref: &dsRef{y: y}}
}

func userValue(email, auth string) dsValue {
	return dsValue{t: vUser, s: email, ref: &dsRef{auth: auth}}
}

// float is a double's value, or a point's x.
func (v dsValue) float() float64 { return math.Float64frombits(uint64(v.i)) }

// pointY is a point's y.
func (v dsValue) pointY() float64 { return v.ref.y }

// authDomain is a user's auth domain.
func (v dsValue) authDomain() string { return v.ref.auth }

func compareFloat(a, b float64) int {
	if !math.IsNaN(a) && !math.IsNaN(b) && a != 0 && b != 0 {
		return cmp.Compare(a, b)
	}
	return cmp.Compare(floatIndexKey(a), floatIndexKey(b))
}

// floatIndexKey maps a double to the unsigned integer that orders it as
// production's index encoding does: the bits of a double with the sign bit
// set are all flipped, the others have their sign bit set. So NaN sorts
// above +Inf (and a NaN with the sign bit below -Inf), -0 sorts just below
// +0 and differs from it, and a NaN equals only a NaN of the same bits: a
// NaN never satisfies P < x or P <= x for a number x, and satisfies P > x.
// The SDK's stub encodes doubles the same way, except that it takes the
// sign of a NaN from a comparison with 0, which a NaN always fails, so
// there every NaN sorts as a positive one; that quirk is not copied.
func floatIndexKey(f float64) uint64 {
	b := math.Float64bits(f)
	if b>>63 == 1 {
		return ^b
	}
	return b | 1<<63
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
		return compareFloat(a.float(), b.float())
	case vPoint:
		if c := compareFloat(a.float(), b.float()); c != 0 {
			return c
		}
		return compareFloat(a.pointY(), b.pointY())
	case vUser:
		if c := strings.Compare(a.s, b.s); c != 0 {
			return c
		}
		return strings.Compare(a.authDomain(), b.authDomain())
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
		return doubleValue(v.Float("doubleValue"))
	case v.Has("pointvalue"):
		p := v.Msg("pointvalue")
		return pointValue(p.Float("x"), p.Float("y"))
	case v.Has("uservalue"):
		u := v.Msg("uservalue")
		return userValue(u.Str("email"), u.Str("auth_domain"))
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
		v.Set("doubleValue", x.float())
	case vPoint:
		p := v.Mutable("pointvalue")
		p.Set("x", x.float())
		p.Set("y", x.pointY())
	case vUser:
		u := v.Mutable("uservalue")
		u.Set("email", x.s)
		u.Set("auth_domain", x.authDomain())
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
