package cloud

import (
	"context"
	"errors"
	"time"

	"cloud.google.com/go/datastore"
	"github.com/icza/gaesession/v2/internal/tier"
	"google.golang.org/api/iterator"
	"google.golang.org/appengine/v2"
)

// datastoreTier is the durable tier on Cloud Datastore
// (cloud.google.com/go/datastore): the entities the bundled store writes,
// as the root package's durable.go maps them. Kind and key names are the
// bundled store's: a session's entity is named by its ID, its removal
// marker by tier.RemovalKeyPrefix and the ID, both without parent, in the
// store's namespace; properties "exp" and "val" as tier.Entity's tags say
// (the Cloud client indexes byte slices unless told "noindex", and "val"
// must not be: an indexed value is limited to 1500 bytes).
type datastoreTier struct {
	client    *datastore.Client
	kind      string
	namespace string
}

var _ tier.Durable = (*datastoreTier)(nil)

// txKey keys the *datastore.Transaction in the context RunInTransaction
// passes to its function: the Cloud client's transaction is a value, not a
// context as the bundled client's, and the core hands the tier only the
// context.
type txKey struct{}

func txOf(ctx context.Context) *datastore.Transaction {
	tx, _ := ctx.Value(txKey{}).(*datastore.Transaction)
	return tx
}

func (t *datastoreTier) key(name string) *datastore.Key {
	k := datastore.NameKey(t.kind, name, nil)
	k.Namespace = t.namespace
	return k
}

func (t *datastoreTier) getMulti(ctx context.Context, keys []*datastore.Key, dst any) error {
	if tx := txOf(ctx); tx != nil {
		return coreError(tx.GetMulti(keys, dst), lookupRetried)
	}
	return coreError(t.client.GetMulti(ctx, keys, dst), lookupRetried)
}

// Lookup reads the marker and the entity in one Lookup RPC; entities
// missing are "not found", not a failure.
func (t *datastoreTier) Lookup(ctx context.Context, id string, entity bool) (tier.Lookup, error) {
	keys := []*datastore.Key{t.key(tier.RemovalKeyPrefix + id)}
	if entity {
		keys = append(keys, t.key(id))
	}
	ents := make([]tier.Entity, len(keys))
	err := t.getMulti(ctx, keys, ents)
	found := make([]bool, len(keys))
	var me appengine.MultiError
	switch {
	case err == nil:
		for i := range found {
			found[i] = true
		}
	case errors.As(err, &me) && len(me) == len(keys):
		for i, e := range me {
			switch {
			case e == nil:
				found[i] = true
			case !errors.Is(e, tier.ErrNoSuchEntity):
				return tier.Lookup{}, err
			}
		}
	default:
		return tier.Lookup{}, err
	}
	var l tier.Lookup
	if found[0] {
		l.RemovedUntil = ents[0].Expires
	}
	if entity && found[1] {
		l.Entity = &ents[1]
	}
	return l, nil
}

// Markers reads the removal markers of ids in one Lookup RPC.
func (t *datastoreTier) Markers(ctx context.Context, ids []string) ([]tier.Marker, error) {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = t.key(tier.RemovalKeyPrefix + id)
	}
	markers := make([]tier.Marker, len(ids))
	return markers, t.getMulti(ctx, keys, markers)
}

func (t *datastoreTier) put(ctx context.Context, key *datastore.Key, src any) error {
	if tx := txOf(ctx); tx != nil {
		_, err := tx.Put(key, src)
		return coreError(err, commitRetried)
	}
	_, err := t.client.Put(ctx, key, src)
	return coreError(err, commitRetried)
}

// PutMarker writes the removal marker of the session id (one Commit).
func (t *datastoreTier) PutMarker(ctx context.Context, id string, m *tier.Marker) error {
	return t.put(ctx, t.key(tier.RemovalKeyPrefix+id), m)
}

// Put writes one session entity: one Commit, or a mutation of the
// transaction of ctx.
func (t *datastoreTier) Put(ctx context.Context, id string, ent *tier.Entity) error {
	return t.put(ctx, t.key(id), ent)
}

// PutMulti writes the entities of the writes whose Merge is nil in one
// Commit.
func (t *datastoreTier) PutMulti(ctx context.Context, writes []tier.EntityWrite) error {
	var keys []*datastore.Key
	var ents []*tier.Entity
	for i := range writes {
		if writes[i].Merge == nil {
			keys = append(keys, t.key(writes[i].ID))
			ents = append(ents, &writes[i].Entity)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := t.client.PutMulti(ctx, keys, ents)
	return coreError(err, commitRetried)
}

// Delete deletes the entity of the session id (one Commit).
func (t *datastoreTier) Delete(ctx context.Context, id string) error {
	return coreError(t.client.Delete(ctx, t.key(id)), commitRetried)
}

// DeleteMulti deletes the entities of ids in one Commit.
func (t *datastoreTier) DeleteMulti(ctx context.Context, ids []string) error {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = t.key(id)
	}
	return coreError(t.client.DeleteMulti(ctx, keys), commitRetried)
}

// RunInTransaction runs f in a Cloud Datastore transaction, which the
// context f gets carries to Lookup and Put. The client runs f again if the
// commit is aborted by a concurrent one. Firestore in Datastore mode has
// no entity-group limit, so the bundled tier's XG has no counterpart.
func (t *datastoreTier) RunInTransaction(ctx context.Context, f func(tc context.Context) error) error {
	_, err := t.client.RunInTransaction(ctx, func(tx *datastore.Transaction) error {
		return f(context.WithValue(ctx, txKey{}, tx))
	})
	return coreError(err, commitRetried)
}

// purgeTier is the purge's side of datastoreTier: a keys-only query on
// "exp", continued from its cursor batch after batch. Its keys travel
// through the purge as any (tier.NewPurgeHandler is not generic).
type purgeTier struct {
	client    *datastore.Client
	kind      string
	namespace string
	n         int
	q         *datastore.Query
}

var _ tier.Purge[any] = (*purgeTier)(nil)

// Start sets up the query of the run.
func (p *purgeTier) Start(cutoff time.Time, n int) {
	p.n = n
	p.q = datastore.NewQuery(p.kind).
		Namespace(p.namespace).
		FilterField("exp", "<", cutoff).
		KeysOnly().
		Limit(n)
}

// Next runs the query from the previous batch's cursor.
func (p *purgeTier) Next(ctx context.Context) ([]any, error) {
	keys := make([]any, 0, p.n)
	it := p.client.Run(ctx, p.q)
	for {
		k, err := it.Next(nil)
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, coreError(err, lookupRetried)
		}
		keys = append(keys, k)
	}
	// The iterator gathers up to the limit across as many RunQuery calls
	// as it takes, so a shorter batch is the last one; only a full one
	// needs the cursor for the next.
	if len(keys) == p.n {
		cur, err := it.Cursor()
		if err != nil {
			return nil, coreError(err, lookupRetried)
		}
		p.q = p.q.Start(cur)
	}
	return keys, nil
}

// DeleteKeys deletes a batch with one Commit.
func (p *purgeTier) DeleteKeys(ctx context.Context, keys []any) error {
	ks := make([]*datastore.Key, len(keys))
	for i, k := range keys {
		ks[i] = k.(*datastore.Key)
	}
	return coreError(p.client.DeleteMulti(ctx, ks), commitRetried)
}

// Name is the key's name: a session ID or a removal marker's.
func (p *purgeTier) Name(k any) string { return k.(*datastore.Key).Name }
