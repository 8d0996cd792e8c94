package aelocal

// Queries in transactions, and the legacy entity-group mode.
//
// Firestore in Datastore mode, every App Engine app's datastore today,
// lets a transaction run any query, not only an ancestor query: "queries
// in transactions are no longer required to be ancestor queries" is one
// of the limits it removed from Cloud Datastore. Neither API's client
// refuses one itself (appengine/v2's datastore package sets the
// transaction on any query), so the server decides. A non-ancestor query
// reads the transaction's snapshot like any other read, and what it could
// have returned joins the read set: production tracks the query's range
// of the index; aelocal tracks the query's kind in its namespace (every
// kind of the namespace for a kindless query), a coarser range, so that a
// commit may conflict where production's would not, never the reverse.
// Such a query uses no entity group: the one-group rule of a non-XG
// transaction is about the entities it gets and writes.
//
// Options.LegacyEntityGroups restores, for databases still in "optimistic
// with entity groups" mode (and for code written against the legacy
// Datastore), the two entity-group rules Firestore removed: only ancestor
// queries in a transaction, and at most 25 entity groups in a
// cross-group transaction.

// maxXGGroups is the legacy limit on the entity groups of a cross-group
// transaction (the SDK's stub and the old production: 25).
const maxXGGroups = 25

// kindRead is a kind of a namespace a transaction's query read; kind ""
// stands for every kind of the namespace.
type kindRead struct {
	sp   nsKey
	kind string
}

// txQueryLocked checks that tx may run q and records what q reads, for
// the conflicts its commit finds.
func (d *datastoreService) txQueryLocked(tx *dsTx, q *dsQuery) error {
	if q.ancestor == nil && d.legacyEntityGroups {
		return badRequest("only ancestor queries are allowed inside transactions")
	}
	if q.meta != "" {
		return badRequest("transactional queries on %q not allowed", q.meta)
	}
	if q.ancestor != nil {
		return d.touchQueryLocked(tx, q.sp, q.ancestor)
	}
	if q.sp.app != tx.app {
		return badRequest("Transactions cannot span applications (expected %s, got %s)", tx.app, q.sp.app)
	}
	if tx.readAll {
		return nil
	}
	if tx.readKinds == nil {
		tx.readKinds = make(map[kindRead]struct{})
	}
	tx.readKinds[kindRead{q.sp, q.kind}] = struct{}{}
	if len(tx.readKinds) > maxTxReads {
		tx.readAll = true
		tx.readKinds = nil
	}
	return nil
}

// kindConflictLocked reports whether someone else wrote, since tx's
// snapshot, an entity of a kind a query of tx read. Every write since the
// oldest open snapshot is in the history.
func (d *datastoreService) kindConflictLocked(tx *dsTx) bool {
	if len(tx.readKinds) == 0 {
		return false
	}
	for _, h := range d.history {
		if h.olds[len(h.olds)-1].until <= tx.snap {
			continue
		}
		kind := h.path[len(h.path)-1].kind
		if _, ok := tx.readKinds[kindRead{h.sp, kind}]; ok {
			return true
		}
		if _, ok := tx.readKinds[kindRead{h.sp, ""}]; ok {
			return true
		}
	}
	return false
}

// xgGroupLocked applies, in legacy mode, the limit of 25 entity groups to
// a cross-group transaction that uses the group g.
func (d *datastoreService) xgGroupLocked(tx *dsTx, g string) error {
	if !d.legacyEntityGroups {
		return nil
	}
	if _, ok := tx.xgGroups[g]; ok {
		return nil
	}
	if len(tx.xgGroups) >= maxXGGroups {
		// The message of the legacy production and the SDK's stub.
		return badRequest("operating on too many entity groups in a single transaction.")
	}
	if tx.xgGroups == nil {
		tx.xgGroups = make(map[string]struct{})
	}
	tx.xgGroups[g] = struct{}{}
	return nil
}
