package aelocal

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
)

// datastore_v3 Error codes.
const (
	dsBadRequest            = 1
	dsConcurrentTransaction = 2
	dsInternalError         = 3
)

// Limits of App Engine's datastore that aelocal enforces, so that code which
// would fail in production fails locally too.
const (
	maxEntityBytes        = 1048572 // encoded EntityProto
	maxKeyPartBytes       = 1500    // a kind or a key name
	maxIndexedStringBytes = 1500    // an indexed string value
	maxPutEntities        = 500     // entities in one Put
	maxDeleteKeys         = 500     // keys in one Delete
	maxGetKeys            = 1000    // keys in one Get
	maxAllocateSize       = 1000000000
	maxAllocateMax        = 1 << 62
)

// Bounds on state that clients may open and then abandon.
const (
	maxOpenCursors = 1000             // open query cursors (for Next)
	cursorIdle     = 10 * time.Minute // an unused cursor expires after this
	maxOpenTx      = 10000            // open transactions
	sweepEvery     = time.Second
)

// nsKey names one partition of the datastore: an app and a namespace.
type nsKey struct{ app, ns string }

// dsSpace holds the entities of one app and namespace.
type dsSpace struct {
	version uint64 // datastore seq of the last write
	// idx holds each kind's entities, in its kind index (the key-ordered
	// tree kindIndex.byKey, their one store), and its sorted indexes
	// (datastore_index_store.go). A kind with entities has its kindIndex;
	// a kind with none has none (datastore_kinds.go).
	idx map[string]*kindIndex
}

// datastoreService implements the "datastore_v3" service: an in-memory,
// strongly consistent datastore.
type datastoreService struct {
	now func() time.Time

	mu  sync.Mutex
	seq uint64 // counts writes; versions are values of it
	// writtenAt is the server's time of the latest write, for the Cloud
	// API's read_time (clouddatastore_tx.go).
	writtenAt time.Time
	spaces    map[nsKey]*dsSpace
	nextID    map[string]int64   // app -> next sequential ID, for AllocateIds (0 means 1)
	nextScat  map[string]int64   // app -> next scattered ID counter, for Put (0 means 1); see datastore_ids.go
	groupVer  map[string]uint64  // entity group -> seq of its last write, kept while transactions are open
	history   map[string]*dsHist // fullKey -> versions replaced while transactions are open
	txs       map[uint64]*dsTx
	cursors   map[uint64]*dsCursor
	handle    uint64 // last transaction or cursor handle given out
	swept     time.Time

	// The bytes of entity versions history holds, and their bound
	// (datastore_txhistory.go); why the server ended transactions early.
	historyBytes int64
	historyLimit int64 // 0 means DefaultTxHistoryLimit
	txEnded      map[uint64]string

	// legacyEntityGroups is Options.LegacyEntityGroups (datastore_txquery.go).
	legacyEntityGroups bool

	// histKind lists history by kind, for the snapshot reads of
	// transactions' queries (datastore_txsnap.go).
	histKind map[kindRead]map[string]*dsHist

	indexes   *dsIndexes // composite indexes queries needed; its own lock
	noPlan    bool       // every query takes the full evaluation (tests compare the planner with it)
	planned   int        // query batches the planner answered (tests count them)
	tiesRead  int        // of them, batches that sorted ties (readTies; tests)
	evaluated int        // full evaluations of a query (evalLocked; tests)
	stats     planStats  // what queries read (datastore_plan.go; tests)
	// planReadHook, if set, runs in every planned read and metadata
	// query's evaluation, without the lock
	// (tests).
	planReadHook func()

	journal *journal  // keeps the datastore file; nil in memory only
	pending []dsWrite // writes not yet sealed into the journal
}

// newDatastoreService makes an empty datastore whose transactions expire
// by the clock now.
func newDatastoreService(now func() time.Time) *datastoreService {
	return &datastoreService{
		now:      now,
		spaces:   make(map[nsKey]*dsSpace),
		nextID:   make(map[string]int64),
		nextScat: make(map[string]int64),
		groupVer: make(map[string]uint64),
		history:  make(map[string]*dsHist),
		histKind: make(map[kindRead]map[string]*dsHist),
		txs:      make(map[uint64]*dsTx),
		cursors:  make(map[uint64]*dsCursor),
		indexes:  newIndexes(),
	}
}

func init() {
	const p = "appengine.v2."
	const void = "appengine.base.v2.VoidProto"
	register("datastore_v3", "Get", p+"GetRequest", p+"GetResponse", dsGet)
	register("datastore_v3", "Put", p+"PutRequest", p+"PutResponse", dsPut)
	register("datastore_v3", "Delete", p+"DeleteRequest", p+"DeleteResponse", dsDelete)
	register("datastore_v3", "RunQuery", p+"Query", p+"QueryResult", dsRunQuery)
	register("datastore_v3", "Next", p+"NextRequest", p+"QueryResult", dsNext)
	register("datastore_v3", "DeleteCursor", p+"Cursor", void, dsDeleteCursor)
	register("datastore_v3", "AllocateIds", p+"AllocateIdsRequest", p+"AllocateIdsResponse", dsAllocateIds)
	register("datastore_v3", "BeginTransaction", p+"BeginTransactionRequest", p+"Transaction", dsBeginTransaction)
	register("datastore_v3", "Commit", p+"Transaction", p+"CommitResponse", dsCommit)
	register("datastore_v3", "Rollback", p+"Transaction", void, dsRollback)
}

func badRequest(format string, args ...any) error { return errorf(dsBadRequest, format, args...) }

// noAppFix ends the error for a request without an app ID. The App Engine
// clients take the ID from GAE_APPLICATION; without it they ask a Google
// Cloud metadata server and fail before anything reaches aelocal, so a
// request that arrives without one comes from a client that sent an empty
// ID of its own, and the fix is the same.
const noAppFix = " (the app ID comes from GAE_APPLICATION where the app runs: export GAE_APPLICATION=" + DefaultAppID + ")"

// noApp is the error for a request without an app ID; what names the
// request or the key.
func noApp(what string) error { return badRequest("%s has no app%s", what, noAppFix) }

// fullKey identifies an entity across the whole datastore.
func fullKey(sp nsKey, path dsPath) string {
	var b strings.Builder
	var tmp [binary.MaxVarintLen64]byte
	b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(sp.app)))])
	b.WriteString(sp.app)
	b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(sp.ns)))])
	b.WriteString(sp.ns)
	b.WriteString(path.encode())
	return b.String()
}

// groupKey identifies the entity group of a key: its root entity.
func groupKey(sp nsKey, path dsPath) string { return fullKey(sp, path[:1]) }

// parseKey reads and checks a Reference. what names it in error messages.
// Only the last path element may be incomplete, and only if
// allowIncomplete. Negative IDs are valid: production stores them (its
// documentation only discourages them) and so does the Python SDK's stub;
// apps do use them, e.g. IDs made from hashes.
func parseKey(r pmsg, what string, allowIncomplete bool) (nsKey, dsPath, error) {
	sp := nsKey{app: r.Str("app"), ns: r.Str("name_space")}
	els := r.Msg("path").Msgs("element")
	path := make(dsPath, len(els))
	for i, e := range els {
		path[i] = dsElem{kind: e.Str("type"), id: e.Int("id"), name: e.Str("name")}
	}
	return checkKey(sp, path, what, allowIncomplete)
}

// checkKey checks a key read from a Reference (parseKey, decodeKey).
func checkKey(sp nsKey, path dsPath, what string, allowIncomplete bool) (nsKey, dsPath, error) {
	if sp.app == "" {
		return sp, nil, noApp(what)
	}
	if len(path) == 0 {
		return sp, nil, badRequest("%s has an empty path", what)
	}
	for i, el := range path {
		switch {
		case el.kind == "":
			return sp, nil, badRequest("%s: path element %d has an empty kind", what, i)
		case len(el.kind) > maxKeyPartBytes:
			return sp, nil, badRequest("%s: kind is %d bytes long; the limit is %d bytes", what, len(el.kind), maxKeyPartBytes)
		case len(el.name) > maxKeyPartBytes:
			return sp, nil, badRequest("%s: key name is %d bytes long; the limit is %d bytes", what, len(el.name), maxKeyPartBytes)
		case el.id != 0 && el.name != "":
			return sp, nil, badRequest("%s: path element %d has both an ID and a name", what, i)
		case !el.complete() && i < len(path)-1:
			return sp, nil, badRequest("%s: ancestor %s is incomplete", what, dsPath(path[:i+1]).String())
		case !el.complete() && !allowIncomplete:
			return sp, nil, badRequest("%s %s is incomplete", what, path[:i+1].String())
		}
	}
	return sp, path, nil
}

func reserved(s string) bool {
	return len(s) >= 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__")
}

// checkPropertyNames refuses an entity with a property named like __x__:
// production reserves those names (for __key__, __scatter__ and the like)
// and refuses to store them, indexed or not, as the SDK's stub does.
func checkPropertyNames(ep pmsg) error {
	for _, field := range []string{"property", "raw_property"} {
		for _, p := range ep.Msgs(field) {
			if name := p.Str("name"); reserved(name) {
				return badRequest("cannot store entity with reserved property name '%s'", name)
			}
		}
	}
	return nil
}

// allocLocked reserves n consecutive automatic IDs of app and returns the
// first.
func (d *datastoreService) allocLocked(app string, n int64) int64 {
	start := max(d.nextID[app], 1)
	d.nextID[app] = start + n
	return start
}

// noteIDLocked keeps automatic IDs of app clear of an ID used explicitly.
func (d *datastoreService) noteIDLocked(app string, id int64) {
	noteID(d.nextID, d.nextScat, app, id)
}

func (d *datastoreService) dropCursorLocked(h uint64) {
	delete(d.cursors, h)
}

// sweepLocked expires idle cursors and transactions, and evicts the least
// recently used ones beyond the caps, making room for one more of each.
func (d *datastoreService) sweepLocked(now time.Time) {
	if now.Sub(d.swept) < sweepEvery && len(d.cursors) < maxOpenCursors && len(d.txs) < maxOpenTx {
		return
	}
	d.swept = now
	for h, c := range d.cursors {
		if now.Sub(c.lastUsed) > cursorIdle {
			d.dropCursorLocked(h)
		}
	}
	d.sweepTxLocked(now)
	for len(d.cursors) >= maxOpenCursors {
		d.dropCursorLocked(leastRecent(d.cursors, func(c *dsCursor) time.Time { return c.lastUsed }))
	}
}

// leastRecent returns the handle in m whose value was used least recently.
func leastRecent[V any](m map[uint64]V, lastUsed func(V) time.Time) uint64 {
	var oldest uint64
	var when time.Time
	for h, v := range m {
		if t := lastUsed(v); oldest == 0 || t.Before(when) {
			oldest, when = h, t
		}
	}
	return oldest
}

// Methods.

// keyRef is a parsed, complete key of a Get or Delete request.
type keyRef struct {
	sp   nsKey
	path dsPath
}

func parseKeys(refs []pmsg) ([]keyRef, error) {
	items := make([]keyRef, len(refs))
	for i, r := range refs {
		sp, path, err := parseKey(r, fmt.Sprintf("key %d", i), false)
		if err != nil {
			return nil, err
		}
		items[i] = keyRef{sp, path}
	}
	return items, nil
}

func dsGet(s *Server, in, out pmsg) error {
	refs := in.Msgs("key")
	if len(refs) > maxGetKeys {
		return badRequest("cannot get more than %d keys in a single call (got %d)", maxGetKeys, len(refs))
	}
	items, err := parseKeys(refs)
	if err != nil {
		return err
	}
	var h uint64
	if in.Has("transaction") {
		h = in.Msg("transaction").Uint("handle")
	}
	found, _, err := s.datastore.get(items, in.Has("transaction"), h)
	if err != nil {
		return err
	}
	return getResponse(in, refs, found, out)
}

// get returns the entities at items (nil where there is none), as the
// live data has them or, if inTx, as the snapshot of the transaction with
// handle h has them; the transaction records them as read. snap is the
// version of the data read. Both APIs read entities here.
func (d *datastoreService) get(items []keyRef, inTx bool, h uint64) (found []*dsEntity, snap uint64, err error) {
	found = make([]*dsEntity, len(items))
	d.mu.Lock()
	defer d.mu.Unlock()
	view := dsView{}
	snap = d.seq
	if inTx {
		tx, err := d.useTxLocked(h)
		if err != nil {
			return nil, 0, err
		}
		for _, it := range items {
			if err := d.touchLocked(tx, it.sp, it.path); err != nil {
				return nil, 0, err
			}
		}
		view = dsView{tx: h, snap: tx.snap}
		snap = tx.snap
	}
	for i, it := range items {
		found[i] = d.readLocked(view, it.sp, it.path)
	}
	return found, snap, nil
}

func dsPut(s *Server, in, out pmsg) (err error) {
	d := s.datastore
	eps := in.Msgs("entity")
	if len(eps) > maxPutEntities {
		return badRequest("cannot write more than %d entities in a single call (got %d)", maxPutEntities, len(eps))
	}
	type item struct {
		sp   nsKey
		path dsPath
		ep   pmsg
	}
	items := make([]item, len(eps))
	for i, ep := range eps {
		sp, path, err := parseKey(ep.Msg("key"), fmt.Sprintf("entity %d: key", i), true)
		if err != nil {
			return err
		}
		if err := checkPut(path, ep, i); err != nil {
			return err
		}
		items[i] = item{sp, path, ep.Clone()}
	}

	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	var tx *dsTx
	if in.Has("transaction") {
		var err error
		if tx, _, err = d.txLocked(in.Msg("transaction")); err != nil {
			return err
		}
		if tx.readOnly {
			return badRequest("cannot write in a read-only transaction")
		}
	}
	ents := make([]*dsEntity, len(items))
	for i := range items {
		it := &items[i]
		e, err := d.prepareLocked(tx, it.sp, it.path, it.ep, i)
		if err != nil {
			return err
		}
		ents[i] = e
	}
	ws := make([]dsWrite, len(ents))
	for i, e := range ents {
		ws[i] = dsWrite{e.space(), e.path, e}
	}
	if tx != nil {
		if err := tx.bufferAll(ws); err != nil {
			return err
		}
	} else {
		d.applyLocked(ws)
	}
	for _, it := range items {
		out.AppendMsg("key").CopyFrom(it.ep.Msg("key"))
	}
	return nil
}

// checkPut refuses entity i of a write, at path, with a reserved kind,
// key name or property name.
func checkPut(path dsPath, ep pmsg, i int) error {
	for _, el := range path {
		if reserved(el.kind) {
			return badRequest("illegal kind %q in the key of entity %d: kinds of the form __*__ are reserved", el.kind, i)
		}
		if reserved(el.name) {
			return badRequest("illegal key name in the key of entity %d: names of the form __*__ are reserved", i)
		}
	}
	return checkPropertyNames(ep)
}

// prepareLocked makes entity i of a write, ep at path, ready to store:
// an incomplete key gets an automatic ID (written into path and ep), IDs
// used explicitly move the ID counters past them, the entity group is set,
// and production's limits are checked; in a transaction tx, the entity
// group must be one it may use. Both APIs write entities through here.
func (d *datastoreService) prepareLocked(tx *dsTx, sp nsKey, path dsPath, ep pmsg, i int) (*dsEntity, error) {
	last := &path[len(path)-1]
	elems := ep.Mutable("key").Mutable("path").Msgs("element")
	if !last.complete() {
		last.id = d.allocScatteredLocked(sp.app)
		el := elems[len(elems)-1]
		el.Clear("name")
		el.Set("id", last.id)
	} else {
		d.noteIDLocked(sp.app, last.id)
	}
	for _, el := range path[:len(path)-1] {
		d.noteIDLocked(sp.app, el.id)
	}
	eg := ep.Mutable("entity_group")
	eg.Clear("element")
	root := eg.AppendMsg("element")
	root.Set("type", path[0].kind)
	if path[0].name != "" {
		root.Set("name", path[0].name)
	} else {
		root.Set("id", path[0].id)
	}
	raw, err := encodeEntity(ep)
	if err != nil {
		return nil, badRequest("entity %d cannot be encoded: %v", i, err)
	}
	if n := len(raw); n > maxEntityBytes {
		// Production says "entity is too big", without the key, whose
		// name can be a secret (a session ID).
		return nil, badRequest("entity %d is too big: %d bytes encoded; the limit is %d bytes", i, n, maxEntityBytes)
	}
	e, err := newEntityRaw(sp, path, raw)
	if err != nil {
		return nil, err
	}
	if tx != nil {
		if err := d.useGroupLocked(tx, sp, path); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func dsDelete(s *Server, in, out pmsg) (err error) {
	d := s.datastore
	refs := in.Msgs("key")
	if len(refs) > maxDeleteKeys {
		return badRequest("cannot delete more than %d entities in a single call (got %d)", maxDeleteKeys, len(refs))
	}
	items, err := parseKeys(refs)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	if in.Has("transaction") {
		tx, _, err := d.txLocked(in.Msg("transaction"))
		if err != nil {
			return err
		}
		if tx.readOnly {
			return badRequest("cannot write in a read-only transaction")
		}
		ws := make([]dsWrite, len(items))
		for i, it := range items {
			if err := d.useGroupLocked(tx, it.sp, it.path); err != nil {
				return err
			}
			ws[i] = dsWrite{it.sp, it.path, nil}
		}
		return tx.bufferAll(ws)
	}
	ws := make([]dsWrite, len(items))
	for i, it := range items {
		ws[i] = dsWrite{it.sp, it.path, nil}
	}
	d.applyLocked(ws)
	return nil
}

func dsAllocateIds(s *Server, in, out pmsg) (err error) {
	d := s.datastore
	if !in.Has("model_key") {
		return badRequest("AllocateIds needs a model_key")
	}
	sp, _, err := parseKey(in.Msg("model_key"), "model key", true)
	if err != nil {
		return err
	}
	var reserve []dsPath
	for i, r := range in.Msgs("reserve") {
		rsp, path, err := parseKey(r, fmt.Sprintf("reserve key %d", i), false)
		if err != nil {
			return err
		}
		if rsp.app != sp.app {
			return badRequest("reserve key %d is in app %q, the model key in %q", i, rsp.app, sp.app)
		}
		reserve = append(reserve, path)
	}
	hasSize, hasMax := in.Has("size"), in.Has("max")
	size, maxID := in.Int("size"), in.Int("max")
	switch {
	case hasSize && hasMax:
		return badRequest("AllocateIds takes size or max, not both")
	case hasSize && (size < 1 || size > maxAllocateSize):
		return badRequest("AllocateIds size must be between 1 and %d, not %d", maxAllocateSize, size)
	case hasMax && (maxID < 0 || maxID > maxAllocateMax):
		return badRequest("AllocateIds max must be between 0 and %d, not %d", int64(maxAllocateMax), maxID)
	case !hasSize && !hasMax && len(reserve) == 0:
		return badRequest("AllocateIds needs size or max")
	}

	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	for _, path := range reserve {
		for _, el := range path {
			d.noteIDLocked(sp.app, el.id)
		}
	}
	var start, end int64
	switch {
	case hasSize:
		start = d.allocLocked(sp.app, size)
		end = start + size - 1
	case hasMax:
		start = max(d.nextID[sp.app], 1)
		end = maxID
		if maxID >= start {
			d.nextID[sp.app] = maxID + 1
		}
	}
	out.Set("start", start)
	out.Set("end", end)
	return nil
}
