package gaesession

import (
	"context"
	"errors"
	"time"

	"github.com/icza/gaesession/v2/internal/tier"
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

// dsEntity is savedEntity as the bundled Datastore saves and loads it: its
// Save and Load make it a datastore.PropertyLoadSaver, which saves the
// stored format (see tier.Entity) without the reflection of
// datastore.SaveStruct.
type dsEntity savedEntity

func (e *dsEntity) Save() ([]datastore.Property, error) {
	return []datastore.Property{
		{Name: "exp", Value: e.Expires},
		{Name: "val", Value: e.Value, NoIndex: true},
	}, nil
}

func (e *dsEntity) Load(ps []datastore.Property) error {
	return datastore.LoadStruct((*SessEntity)(e), ps)
}

// key is the Datastore key of the session id's entity.
func (t *datastoreTier) key(ctx context.Context, id string) *datastore.Key {
	return datastore.NewKey(ctx, t.kind, id, 0, nil)
}

// Lookup reads in one GetMulti; a MultiError whose only errors are
// missing entities is "not found", not a failure.
func (t *datastoreTier) Lookup(ctx context.Context, id string, entity bool) (datastoreLookup, error) {
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
	if found[0] {
		l.RemovedUntil = ents[0].Expires
	}
	if entity && found[1] {
		l.Entity = (*savedEntity)(&ents[1])
	}
	return l, nil
}

func (t *datastoreTier) Markers(ctx context.Context, ids []string) ([]removalMarker, error) {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = removalKey(ctx, t.kind, id)
	}
	markers := make([]removalMarker, len(ids))
	return markers, datastore.GetMulti(ctx, keys, markers)
}

func (t *datastoreTier) PutMarker(ctx context.Context, id string, m *removalMarker) error {
	_, err := datastore.Put(ctx, removalKey(ctx, t.kind, id), m)
	return err
}

func (t *datastoreTier) Put(ctx context.Context, id string, ent *savedEntity) error {
	_, err := datastore.Put(ctx, t.key(ctx, id), (*dsEntity)(ent))
	return err
}

func (t *datastoreTier) PutMulti(ctx context.Context, writes []dsWrite) error {
	var keys []*datastore.Key
	var ents []*dsEntity
	for i := range writes {
		if writes[i].Merge == nil {
			keys = append(keys, t.key(ctx, writes[i].ID))
			ents = append(ents, (*dsEntity)(&writes[i].Entity))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := datastore.PutMulti(ctx, keys, ents)
	return err
}

func (t *datastoreTier) Delete(ctx context.Context, id string) error {
	return datastore.DeleteMulti(ctx, []*datastore.Key{t.key(ctx, id)})
}

func (t *datastoreTier) DeleteMulti(ctx context.Context, ids []string) error {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = t.key(ctx, id)
	}
	return datastore.DeleteMulti(ctx, keys)
}

func (t *datastoreTier) RunInTransaction(ctx context.Context, f func(tc context.Context) error) error {
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

var _ tier.Purge[*datastore.Key] = (*datastorePurge)(nil)

func (d *datastorePurge) Start(cutoff time.Time, n int) {
	d.n = n
	d.q = datastore.NewQuery(d.kind).
		Filter("exp <", cutoff).
		KeysOnly().
		Limit(n).
		BatchSize(n)
}

func (d *datastorePurge) Next(ctx context.Context) ([]*datastore.Key, error) {
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

func (d *datastorePurge) DeleteKeys(ctx context.Context, keys []*datastore.Key) error {
	return datastore.DeleteMulti(ctx, keys)
}

func (d *datastorePurge) Name(k *datastore.Key) string { return k.StringID() }
