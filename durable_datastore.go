package gaesession

import (
	"context"
	"errors"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// datastoreTier is the durable tier on App Engine's bundled Datastore
// (datastore_v3), in the kind DSEntityName. A store holds it in a field of
// its own and its durableTier field points there, so that it costs no
// allocation.
type datastoreTier struct {
	kind string
}

var _ durableTier = (*datastoreTier)(nil)

// Save and Load make savedEntity a datastore.PropertyLoadSaver: the
// bundled Datastore's form of the stored format (see savedEntity).
func (e *savedEntity) Save() ([]datastore.Property, error) {
	return []datastore.Property{
		{Name: "exp", Value: e.Expires},
		{Name: "val", Value: e.Value, NoIndex: true},
	}, nil
}

func (e *savedEntity) Load(ps []datastore.Property) error {
	return datastore.LoadStruct((*SessEntity)(e), ps)
}

// key is the Datastore key of the session id's entity.
func (t *datastoreTier) key(ctx context.Context, id string) *datastore.Key {
	return datastore.NewKey(ctx, t.kind, id, 0, nil)
}

// lookup reads in one GetMulti; a MultiError whose only errors are
// missing entities is "not found", not a failure.
func (t *datastoreTier) lookup(ctx context.Context, id string, entity bool) (datastoreLookup, error) {
	keys := []*datastore.Key{removalKey(ctx, t.kind, id)}
	if entity {
		keys = append(keys, t.key(ctx, id))
	}
	ents := make([]SessEntity, len(keys))
	err := datastore.GetMulti(ctx, keys, ents)
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
			case !errors.Is(e, datastore.ErrNoSuchEntity):
				return datastoreLookup{}, err
			}
		}
	default:
		return datastoreLookup{}, err
	}
	var l datastoreLookup
	if found[0] && !timeNow().After(ents[0].Expires) {
		l.removedUntil = ents[0].Expires
	}
	if entity && found[1] {
		l.entity = &ents[1]
	}
	return l, nil
}

func (t *datastoreTier) markers(ctx context.Context, ids []string) ([]removalMarker, error) {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = removalKey(ctx, t.kind, id)
	}
	markers := make([]removalMarker, len(ids))
	return markers, datastore.GetMulti(ctx, keys, markers)
}

func (t *datastoreTier) putMarker(ctx context.Context, id string, m *removalMarker) error {
	_, err := datastore.Put(ctx, removalKey(ctx, t.kind, id), m)
	return err
}

func (t *datastoreTier) put(ctx context.Context, id string, ent *savedEntity) error {
	_, err := datastore.Put(ctx, t.key(ctx, id), ent)
	return err
}

func (t *datastoreTier) putMulti(ctx context.Context, writes []dsWrite) error {
	var keys []*datastore.Key
	var ents []*savedEntity
	for i := range writes {
		if writes[i].merge == nil {
			keys = append(keys, t.key(ctx, writes[i].id))
			ents = append(ents, (*savedEntity)(&writes[i].entity))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := datastore.PutMulti(ctx, keys, ents)
	return err
}

func (t *datastoreTier) delete(ctx context.Context, id string) error {
	return datastore.DeleteMulti(ctx, []*datastore.Key{t.key(ctx, id)})
}

func (t *datastoreTier) deleteMulti(ctx context.Context, ids []string) error {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = t.key(ctx, id)
	}
	return datastore.DeleteMulti(ctx, keys)
}

func (t *datastoreTier) runInTransaction(ctx context.Context, f func(tc context.Context) error) error {
	return datastore.RunInTransaction(ctx, f, &datastore.TransactionOptions{XG: true})
}

// removalKey is the Datastore key of the removal marker of the session id,
// in the session kind: the purge, which deletes entities of that kind whose
// "exp" has passed, deletes expired markers with the sessions, and so does
// the original package's purge.
func removalKey(ctx context.Context, kind, id string) *datastore.Key {
	return datastore.NewKey(ctx, kind, removalKeyPrefix+id, 0, nil)
}

// datastorePurge is the purge's side of datastoreTier: a keys-only query
// on "exp", continued from its cursor batch after batch.
type datastorePurge struct {
	kind string
	n    int
	q    *datastore.Query
}

var _ purgeTier[*datastore.Key] = (*datastorePurge)(nil)

func (d *datastorePurge) start(cutoff time.Time, n int) {
	d.n = n
	d.q = datastore.NewQuery(d.kind).
		Filter("exp <", cutoff).
		KeysOnly().
		Limit(n).
		BatchSize(n)
}

func (d *datastorePurge) next(ctx context.Context) ([]*datastore.Key, error) {
	keys := make([]*datastore.Key, 0, d.n)
	it := d.q.Run(ctx)
	for {
		k, err := it.Next(nil)
		if err == datastore.Done {
			break
		}
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	// The iterator gathers up to the limit across as many Next calls as
	// it takes, so a shorter batch is the last one; only a full one needs
	// the cursor for the next.
	if len(keys) == d.n {
		cur, err := it.Cursor()
		if err != nil {
			return nil, err
		}
		d.q = d.q.Start(cur)
	}
	return keys, nil
}

func (d *datastorePurge) deleteKeys(ctx context.Context, keys []*datastore.Key) error {
	return datastore.DeleteMulti(ctx, keys)
}

func (d *datastorePurge) name(k *datastore.Key) string { return k.StringID() }
