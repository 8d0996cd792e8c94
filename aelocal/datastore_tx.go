package aelocal

import (
	"fmt"
	"time"
)

// Transactions.
//
// A transaction reads one snapshot of the datastore: the state at
// BeginTransaction. App Engine documents exactly that ("queries and gets
// inside a transaction are guaranteed to see a single, consistent snapshot
// of the Datastore as of the beginning of the transaction"). The Python
// SDK's stub takes a snapshot of each entity group when the transaction
// first touches it and fails the transaction as soon as an earlier group
// has changed since; it therefore never shows an inconsistent view either,
// but fails earlier and more often. aelocal follows the documented
// behaviour: snapshot at begin, conflicts detected at commit.
//
// Writes are buffered until Commit and are not visible to the
// transaction's own reads, as in production.
//
// Conflicts come from what a transaction read, as in Firestore in Datastore
// mode, which is every App Engine app's datastore today ("the documents
// retrieved by its read operations must remain unmodified by operations
// outside the transaction"): Commit fails with CONCURRENT_TRANSACTION if
// anyone else wrote, after the snapshot, an entity the transaction got (a
// key it found missing included) or anything in the entity group of an
// ancestor query it ran, or of the kind of another query it ran
// (datastore_txquery.go) (coarser ranges than production's, which err
// towards a conflict, never away from one). A blind write, a Put or
// Delete of a key the transaction never read, never conflicts: the
// transaction's write simply lands last, as in production and the SDK's
// stub (which takes the snapshot of a group it only wrote at commit). A
// read-only transaction never conflicts. aelocal detects conflicts
// optimistically, at commit; a Firestore database in pessimistic mode
// would instead make the other writer wait for the transaction's lock,
// which a single-process local server has no need to copy.
//
// What a transaction touched (read or wrote) is held to the rules that
// still apply: one app, and one entity group unless the transaction is
// cross-group (XG). The old limit of 25 entity groups in an XG
// transaction is gone, as Firestore in Datastore mode removed it; what
// production bounds instead is a transaction's size, 10 MiB, which aelocal
// checks on the writes it buffers.
//
// Production ends a transaction that was idle for 60 seconds or is older
// than 270 seconds; aelocal judges both by the server's clock
// (Server.FastForward moves it), each time the transaction is used.

// Transaction limits of production.
const (
	txIdleLimit = 60 * time.Second
	txAgeLimit  = 270 * time.Second
	maxTxBytes  = 10 << 20 // the writes of one transaction
)

// maxTxReads bounds the keys and groups a transaction's read set lists
// (aelocal's own bound, so that no client can grow it without end). Past
// it the transaction conflicts with any write made after its snapshot:
// more conflicts than production, never fewer.
const maxTxReads = 10000

// dsTx is an open transaction.
type dsTx struct {
	app      string
	xg       bool
	readOnly bool
	snap     uint64 // datastore seq of the snapshot it reads
	group    string // the entity group of a non-XG transaction, once used
	// The read set, which decides conflicts at commit.
	readKeys   map[string]struct{} // fullKeys of the entities Get read
	readGroups map[string]struct{} // entity groups ancestor queries read
	readAll    bool                // the read set outgrew maxTxReads
	writes     map[string]int      // fullKey -> index in order
	order      []dsWrite
	writeBytes int // encoded size of order, against maxTxBytes
	begun      time.Time
	lastUsed   time.Time
	actions    []func() // run once the commit applied: transactional tasks
	nTasks     int      // tasks the actions add

	// Kinds that non-ancestor queries read, part of the read set; the
	// groups of an XG transaction, counted in legacy mode only
	// (datastore_txquery.go).
	readKinds map[kindRead]struct{}
	xgGroups  map[string]struct{}
}

// dsWrite is one write of a batch: an entity to store, or a key to delete.
type dsWrite struct {
	sp   nsKey
	path dsPath
	ent  *dsEntity // nil deletes
}

// dsView is the state of the datastore that a read sees: the live data
// (the zero dsView) or the snapshot of a transaction.
type dsView struct {
	tx   uint64 // handle of the transaction; 0 for the live data
	snap uint64 // datastore seq of the snapshot
}

// dsHist keeps the versions of one key that writes replaced while
// transactions were open, so that their snapshots can still be read.
type dsHist struct {
	sp   nsKey
	path dsPath
	olds []dsOld // in the order of the writes
}

type dsOld struct {
	until uint64    // seq of the write that replaced e
	e     *dsEntity // nil if there was no entity
}

// applyLocked applies a batch of writes: a Put or Delete outside a
// transaction, or a committed transaction. Every change to the stored
// entities goes through here.
func (d *datastoreService) applyLocked(ws []dsWrite) {
	d.recordLocked(ws) // for the datastore file, if any (persist_journal.go)
	if len(ws) > 0 {
		d.writtenAt = d.now()
	}
	for _, w := range ws {
		d.writeLocked(w.sp, w.path, w.ent)
	}
	d.boundHistoryLocked() // datastore_txhistory.go
	if len(d.history) > 0 {
		d.sweepLocked(d.now())
	}
}

// writeLocked stores e at path, or deletes the entity there if e is nil.
func (d *datastoreService) writeLocked(sp nsKey, path dsPath, e *dsEntity) {
	d.seq++
	if len(d.txs) > 0 {
		d.groupVer[groupKey(sp, path)] = d.seq
		fk := fullKey(sp, path)
		h := d.history[fk]
		if h == nil {
			h = &dsHist{sp: sp, path: path}
			d.history[fk] = h
			d.noteHistLocked(fk, h) // datastore_txsnap.go
		}
		old := dsOld{until: d.seq, e: d.lookupLocked(sp, path)}
		h.olds = append(h.olds, old)
		d.historyBytes += old.cost()
	}
	if e != nil {
		e.ver = d.seq
	}
	d.storeLocked(sp, path, e)
}

// atLocked returns the version of the entity at fk that a snapshot taken at
// seq snap sees, given the current one (nil if there is none).
func (d *datastoreService) atLocked(snap uint64, fk string, cur *dsEntity) *dsEntity {
	if cur != nil && cur.ver <= snap {
		return cur
	}
	if h := d.history[fk]; h != nil {
		for _, o := range h.olds {
			if o.until > snap {
				return o.e
			}
		}
	}
	return cur
}

// readLocked returns the entity at path as v sees it.
func (d *datastoreService) readLocked(v dsView, sp nsKey, path dsPath) *dsEntity {
	cur := d.lookupLocked(sp, path)
	if v.tx == 0 {
		return cur
	}
	return d.atLocked(v.snap, fullKey(sp, path), cur)
}

// eachLocked calls yield for every entity of kind in sp (every kind if
// kind is "") as v sees them, in no particular order. With an ancestor it
// may yield only the ancestor and its descendants: it then reads the
// ancestor's range of each kind index (its descendants sort together from
// its key on), so an ancestor query in a transaction costs the size of
// its entity group, not of its kind.
//
// The planner reads a transaction's snapshot without the lock
// (datastore_txsnap.go); this serves the full evaluation, the queries it
// does not plan and the tests that compare it with the planner (noPlan).
func (d *datastoreService) eachLocked(v dsView, sp nsKey, kind string, ancestor dsPath, yield func(*dsEntity)) {
	at := func(e *dsEntity) *dsEntity {
		if v.tx != 0 && e.ver > v.snap {
			return d.atLocked(v.snap, fullKey(e.space(), e.path), e)
		}
		return e
	}
	each := func(ki *kindIndex) {
		if ki == nil {
			return
		}
		if ancestor != nil && !d.noPlan {
			ki.byKey.AscendGreaterOrEqual(pathProbe(ancestor), func(e *dsEntity) bool {
				if !e.path.hasPrefix(ancestor) {
					return false
				}
				if e = at(e); e != nil {
					yield(e)
				}
				return true
			})
			return
		}
		ki.byKey.Ascend(func(e *dsEntity) bool {
			if e = at(e); e != nil {
				yield(e)
			}
			return true
		})
	}
	if s := d.spaces[sp]; s != nil {
		if kind != "" {
			each(s.idx[kind])
		} else {
			for _, ki := range s.idx {
				each(ki)
			}
		}
	}
	if v.tx == 0 {
		return
	}
	// Entities deleted since the snapshot.
	for fk, h := range d.history {
		if h.sp != sp || (kind != "" && h.path[len(h.path)-1].kind != kind) || d.lookupLocked(sp, h.path) != nil {
			continue
		}
		if ancestor != nil && !h.path.hasPrefix(ancestor) {
			continue
		}
		if e := d.atLocked(v.snap, fk, nil); e != nil {
			yield(e)
		}
	}
}

// viewVersionLocked changes whenever the answer to q as v sees it may
// change. A snapshot never changes.
func (d *datastoreService) viewVersionLocked(v dsView, q *dsQuery) uint64 {
	if v.tx != 0 {
		return v.snap
	}
	return d.versionLocked(q)
}

// txLocked finds the open transaction a request names and marks it used.
// A transaction past its idle or age limit ends here.
func (d *datastoreService) txLocked(t pmsg) (*dsTx, uint64, error) {
	h := t.Uint("handle")
	tx, err := d.useTxLocked(h)
	return tx, h, err
}

// useTxLocked is txLocked for a handle: a continued query of the
// transaction uses it too.
func (d *datastoreService) useTxLocked(h uint64) (*dsTx, error) {
	tx := d.txs[h]
	if tx == nil {
		if why, ok := d.txEnded[h]; ok {
			delete(d.txEnded, h)
			return nil, badRequest("the transaction has expired or is no longer valid: %s", why)
		}
		return nil, badRequest("transaction %d is unknown: it was already committed or rolled back, or it expired", h)
	}
	now := d.now()
	if why := tx.expired(now); why != "" {
		d.dropTxLocked(h)
		return nil, badRequest("the transaction has expired or is no longer valid: %s", why)
	}
	tx.lastUsed = now
	return tx, nil
}

// expired says why tx has ended at now, or "" if it has not.
func (tx *dsTx) expired(now time.Time) string {
	switch {
	case now.Sub(tx.lastUsed) > txIdleLimit:
		return fmt.Sprintf("it was idle for %v, more than %v", now.Sub(tx.lastUsed).Round(time.Second), txIdleLimit)
	case now.Sub(tx.begun) > txAgeLimit:
		return fmt.Sprintf("it began %v ago, more than %v", now.Sub(tx.begun).Round(time.Second), txAgeLimit)
	}
	return ""
}

// useGroupLocked checks that tx may use (read or write) the entity group
// of path: one app per transaction, and one group unless it is XG.
func (d *datastoreService) useGroupLocked(tx *dsTx, sp nsKey, path dsPath) error {
	// aelocal serves every app, and outside transactions lets a call name
	// any; a transaction belongs to one, as in production and the SDK's
	// stub (whose message this is).
	if sp.app != tx.app {
		return badRequest("Transactions cannot span applications (expected %s, got %s)", tx.app, sp.app)
	}
	g := groupKey(sp, path)
	if tx.xg {
		return d.xgGroupLocked(tx, g) // datastore_txquery.go
	}
	switch tx.group {
	case "":
		tx.group = g
	case g:
	default:
		return badRequest("cross-group transaction need to be explicitly specified: entity group %s is the second one of this transaction (use datastore.TransactionOptions{XG: true})", path[:1])
	}
	return nil
}

// touchLocked records that tx reads the entity at path (a Get): a write of
// it by anyone else after the snapshot makes the commit conflict.
func (d *datastoreService) touchLocked(tx *dsTx, sp nsKey, path dsPath) error {
	if err := d.useGroupLocked(tx, sp, path); err != nil {
		return err
	}
	tx.addRead(tx.readKeys, fullKey(sp, path))
	return nil
}

// touchQueryLocked records that tx runs a query with ancestor path: a
// write anywhere in its entity group by anyone else after the snapshot
// makes the commit conflict.
func (d *datastoreService) touchQueryLocked(tx *dsTx, sp nsKey, ancestor dsPath) error {
	if err := d.useGroupLocked(tx, sp, ancestor); err != nil {
		return err
	}
	tx.addRead(tx.readGroups, groupKey(sp, ancestor))
	return nil
}

func (tx *dsTx) addRead(set map[string]struct{}, k string) {
	if tx.readAll {
		return
	}
	set[k] = struct{}{}
	if len(tx.readKeys)+len(tx.readGroups) > maxTxReads {
		tx.readAll = true
		tx.readKeys, tx.readGroups = nil, nil
	}
}

// conflictLocked reports whether a write by someone else since tx's
// snapshot touched what tx read.
func (d *datastoreService) conflictLocked(tx *dsTx) bool {
	if tx.readOnly {
		return false
	}
	if tx.readAll {
		return d.seq > tx.snap
	}
	if d.kindConflictLocked(tx) { // datastore_txquery.go
		return true
	}
	for g := range tx.readGroups {
		if d.groupVer[g] > tx.snap {
			return true
		}
	}
	// Every write since the oldest open snapshot is in the history.
	for fk := range tx.readKeys {
		if h := d.history[fk]; h != nil && h.olds[len(h.olds)-1].until > tx.snap {
			return true
		}
	}
	return false
}

// size is what w counts against a transaction's maxTxBytes.
func (w dsWrite) size() int {
	if w.ent != nil {
		return w.ent.size()
	}
	return len(w.path.encode()) + len(w.sp.app) + len(w.sp.ns)
}

// bufferAll queues writes for commit, unless they would take the
// transaction past production's size limit; then it queues none.
func (tx *dsTx) bufferAll(ws []dsWrite) error {
	total := tx.writeBytes
	for _, w := range ws {
		total += w.size()
	}
	if total > maxTxBytes {
		// Counting replaced writes twice only errs in a corner case
		// (the same key rewritten near the limit), towards refusing.
		return badRequest("transaction too big: its writes come to %d bytes; the limit is %d bytes (10 MiB)", total, maxTxBytes)
	}
	for _, w := range ws {
		tx.buffer(w)
	}
	return nil
}

// buffer queues a write for commit; a later write of the same key replaces
// an earlier one.
func (tx *dsTx) buffer(w dsWrite) {
	k := fullKey(w.sp, w.path)
	tx.writeBytes += w.size()
	if i, ok := tx.writes[k]; ok {
		tx.writeBytes -= tx.order[i].size()
		tx.order[i] = w
		return
	}
	tx.writes[k] = len(tx.order)
	tx.order = append(tx.order, w)
}

func (d *datastoreService) dropTxLocked(h uint64) {
	if d.txs[h] == nil {
		return
	}
	delete(d.txs, h)
	// A query of the transaction reads its snapshot, whose old versions
	// may go now.
	for c, cur := range d.cursors {
		if cur.view.tx == h {
			d.dropCursorLocked(c)
		}
	}
	if len(d.txs) == 0 {
		// Versions and history only matter to open transactions.
		clear(d.groupVer)
		clear(d.history)
		clear(d.histKind)
		d.historyBytes = 0
		return
	}
	minSnap := d.seq
	for _, t := range d.txs {
		minSnap = min(minSnap, t.snap)
	}
	for g, v := range d.groupVer {
		if v <= minSnap {
			delete(d.groupVer, g)
		}
	}
	for fk, h := range d.history {
		i := 0
		for i < len(h.olds) && h.olds[i].until <= minSnap {
			d.historyBytes -= h.olds[i].cost()
			i++
		}
		if i == len(h.olds) {
			delete(d.history, fk)
			d.forgetHistLocked(fk, h)
		} else {
			h.olds = h.olds[i:]
		}
	}
}

// sweepTxLocked ends the transactions past their limits, and the least
// recently used ones beyond the cap, making room for one more.
func (d *datastoreService) sweepTxLocked(now time.Time) {
	for h, t := range d.txs {
		if t.expired(now) != "" {
			d.dropTxLocked(h)
		}
	}
	for len(d.txs) >= maxOpenTx {
		d.dropTxLocked(leastRecent(d.txs, func(t *dsTx) time.Time { return t.lastUsed }))
	}
}

func dsBeginTransaction(s *Server, in, out pmsg) error {
	app := in.Str("app")
	if app == "" {
		return noApp("BeginTransaction")
	}
	h := s.datastore.beginTx(app, in.Bool("allow_multiple_eg"), in.Int("mode") == 1) // 1: READ_ONLY
	out.Set("handle", h)
	out.Set("app", app)
	return nil
}

// beginTx opens a transaction of app and returns its handle. Both APIs
// begin their transactions here.
func (d *datastoreService) beginTx(app string, xg, readOnly bool) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.sweepLocked(now)
	d.handle++
	h := d.handle
	d.txs[h] = &dsTx{
		app:        app,
		xg:         xg,
		readOnly:   readOnly,
		snap:       d.seq,
		readKeys:   make(map[string]struct{}),
		readGroups: make(map[string]struct{}),
		writes:     make(map[string]int),
		begun:      now,
		lastUsed:   now,
	}
	return h
}

func dsCommit(s *Server, in, out pmsg) (err error) {
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	tx, h, err := d.txLocked(in)
	if err != nil {
		return err
	}
	return d.commitLocked(tx, h)
}

// commitLocked commits tx, whose handle is h, unless a write by someone
// else since its snapshot conflicts with what it read. The transaction
// ends either way. Both APIs commit here.
func (d *datastoreService) commitLocked(tx *dsTx, h uint64) error {
	if len(tx.order) > 0 {
		if err := d.writableLocked(); err != nil {
			d.dropTxLocked(h)
			return err
		}
	}
	if d.conflictLocked(tx) {
		d.dropTxLocked(h)
		return errorf(dsConcurrentTransaction, "too much contention on these datastore entities: another write to an entity this transaction read committed first; please try again")
	}
	// Ended first, so that the history bound that applying may enforce
	// cannot pick this transaction; the other open ones still see the
	// writes (writeLocked records them while any transaction is open).
	d.dropTxLocked(h)
	d.applyLocked(tx.order)
	for _, a := range tx.actions {
		a()
	}
	return nil
}

func dsRollback(s *Server, in, out pmsg) error {
	d := s.datastore
	d.mu.Lock()
	defer d.mu.Unlock()
	_, h, err := d.txLocked(in)
	if err != nil {
		return err
	}
	d.dropTxLocked(h)
	return nil
}
