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
// transaction's own reads, as in production. Commit fails with
// CONCURRENT_TRANSACTION if anyone else wrote to an entity group the
// transaction used (read or wrote) after its snapshot; a read-only
// transaction never conflicts. Production ends a transaction that was idle
// for 60 seconds or is older than 270 seconds; aelocal judges both by the
// server's clock (Server.FastForward moves it), each time the transaction
// is used.

// Transaction limits of production.
const (
	txIdleLimit = 60 * time.Second
	txAgeLimit  = 270 * time.Second
)

// dsTx is an open transaction.
type dsTx struct {
	app      string
	xg       bool
	readOnly bool
	snap     uint64              // datastore seq of the snapshot it reads
	groups   map[string]struct{} // entity groups used
	writes   map[string]int      // fullKey -> index in order
	order    []dsWrite
	begun    time.Time
	lastUsed time.Time
	actions  []func() // run once the commit applied: transactional tasks
	nTasks   int      // tasks the actions add
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
	for _, w := range ws {
		d.writeLocked(w.sp, w.path, w.ent)
	}
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
		}
		h.olds = append(h.olds, dsOld{until: d.seq, e: d.lookupLocked(sp, path)})
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
// kind is "") as v sees them, in no particular order.
func (d *datastoreService) eachLocked(v dsView, sp nsKey, kind string, yield func(*dsEntity)) {
	each := func(m map[string]*dsEntity) {
		for _, e := range m {
			if v.tx != 0 && e.ver > v.snap {
				if e = d.atLocked(v.snap, fullKey(e.sp, e.path), e); e == nil {
					continue
				}
			}
			yield(e)
		}
	}
	if s := d.spaces[sp]; s != nil {
		if kind != "" {
			each(s.kinds[kind])
		} else {
			for _, m := range s.kinds {
				each(m)
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

// touchLocked records that tx uses the entity group of path.
func (d *datastoreService) touchLocked(tx *dsTx, sp nsKey, path dsPath) error {
	g := groupKey(sp, path)
	if _, ok := tx.groups[g]; ok {
		return nil
	}
	// aelocal serves every app, and outside transactions lets a call name
	// any; a transaction belongs to one, as in production and the SDK's
	// stub (whose message this is).
	if sp.app != tx.app {
		return badRequest("Transactions cannot span applications (expected %s, got %s)", tx.app, sp.app)
	}
	if !tx.xg && len(tx.groups) >= 1 {
		return badRequest("cross-group transaction need to be explicitly specified: entity group %s is the second one of this transaction (use datastore.TransactionOptions{XG: true})", path[:1])
	}
	if len(tx.groups) >= maxTxGroups {
		return badRequest("operating on too many entity groups in a single transaction: the limit is %d", maxTxGroups)
	}
	tx.groups[g] = struct{}{}
	return nil
}

// buffer queues a write for commit; a later write of the same key replaces
// an earlier one.
func (tx *dsTx) buffer(w dsWrite) {
	k := fullKey(w.sp, w.path)
	if i, ok := tx.writes[k]; ok {
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
			i++
		}
		if i == len(h.olds) {
			delete(d.history, fk)
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
	d := s.datastore
	app := in.Str("app")
	if app == "" {
		return noApp("BeginTransaction")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.sweepLocked(now)
	d.handle++
	h := d.handle
	d.txs[h] = &dsTx{
		app:      app,
		xg:       in.Bool("allow_multiple_eg"),
		readOnly: in.Int("mode") == 1, // READ_ONLY
		snap:     d.seq,
		groups:   make(map[string]struct{}),
		writes:   make(map[string]int),
		begun:    now,
		lastUsed: now,
	}
	out.Set("handle", h)
	out.Set("app", app)
	return nil
}

func dsCommit(s *Server, in, out pmsg) (err error) {
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	tx, h, err := d.txLocked(in)
	if err != nil {
		return err
	}
	if !tx.readOnly {
		for g := range tx.groups {
			if d.groupVer[g] > tx.snap {
				d.dropTxLocked(h)
				return errorf(dsConcurrentTransaction, "too much contention on these datastore entities: another write to an entity group of this transaction committed first; please try again")
			}
		}
	}
	// Writes of this commit must still count against the other open
	// transactions, so apply them before this one stops being open.
	d.applyLocked(tx.order)
	d.dropTxLocked(h)
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
