package cloud

import (
	"context"
	"net/http"

	"cloud.google.com/go/datastore"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
)

// Options configures a Cloud store. The zero value of a field selects its
// default.
type Options struct {
	// The bundled store's options, which mean here what they mean there:
	// KeyPrefix (of the cache key), Retries, Codec, ExpirySlack,
	// MergeConcurrentUpdates, AsyncDatastoreSave, AsyncSaveTimeout and
	// DSEntityName (the Datastore kind). OnlyMemcache keeps sessions in
	// the cache alone, whichever it is. Stores of either package that
	// serve the same users must agree on KeyPrefix, Codec and
	// DSEntityName.
	gaesession.MemcacheStoreOptions

	// Namespace is the Datastore namespace of the session entities;
	// default is the default namespace, the one the bundled store writes
	// to unless the app's App Engine context names another
	// (appengine.Namespace).
	Namespace string
}

// NewStore returns a session Store for one request, on Cloud Datastore
// (client) and the given cache: the bundled store's session logic (it is
// the same code) over other tiers, with its guarantees: one cache read per
// read-only request, writes only on change, a logout final also when the
// cache evicts (the Datastore carries it), idle expiry, merges, async
// saves, no session ID in any log line. It reads and writes the very
// entities and cache values the bundled store (NewMemcacheStoreOptions)
// and the original package do, so that they serve the same users during a
// move (README, "Moving off the bundled services").
//
// ctx is the request's context; with the Memcache cache it must be an App
// Engine one (appengine.NewContext). Like the bundled store, the returned
// Store lives for one request and must be closed at its end. A nil o means
// the defaults. gaesession's SaveError, SessionOrigin (OriginMemcache
// stands for the cache, whichever it is) and WaitForAsyncSaves work on it.
//
// With the zero Cache (none) every request reads the Datastore, and the
// store runs in the default mode: AsyncDatastoreSave and
// MergeConcurrentUpdates are ignored, since both decide in the cache. A
// nil client means OnlyMemcache; NewStore panics if there is neither a
// client nor a cache.
func NewStore(ctx context.Context, client *datastore.Client, cache Cache, o *Options) session.Store {
	var opts Options
	if o != nil {
		opts = *o
	}
	if client == nil && cache.tier == nil {
		panic("cloud: NewStore needs a Datastore client or a cache")
	}
	var durable tier.Durable
	if client != nil && !opts.OnlyMemcache {
		kind := opts.DSEntityName
		if kind == "" {
			kind = defaultKind
		}
		durable = &datastoreTier{client: client, kind: kind, namespace: opts.Namespace}
	}
	c := cache.tier
	if c == nil {
		c = noCache{}
		opts.AsyncDatastoreSave, opts.MergeConcurrentUpdates = false, false
	}
	return tier.NewStore(ctx, c, durable, &opts.MemcacheStoreOptions)
}

// defaultKind is the bundled store's default DSEntityName.
const defaultKind = "sess_"

// PurgeOptions configures the handler of PurgeExpiredSessFunc.
type PurgeOptions struct {
	// The bundled purge's options, which mean here what they mean there
	// (DSEntityName, Deadline, BatchSize, SafetyMargin, ExpiredFor,
	// CronOnly).
	gaesession.PurgeOptions

	// Namespace is the Datastore namespace of the session entities, as
	// Options.Namespace.
	Namespace string
}

// PurgeExpiredSessFunc returns a request handler that deletes expired
// sessions and removal markers from Cloud Datastore through client, as
// gaesession.PurgeExpiredSessFromDSFuncOptions does from the bundled
// Datastore: the same batches, deadlines, JSON answer, logs and CronOnly
// check (App Engine's cron header, which App Engine strips from outside
// requests: on another platform, leave CronOnly off and keep the path
// private). Either handler purges the sessions of both stores. A nil o
// means the defaults.
func PurgeExpiredSessFunc(client *datastore.Client, o *PurgeOptions) http.HandlerFunc {
	var opts PurgeOptions
	if o != nil {
		opts = *o
	}
	kind := opts.DSEntityName
	if kind == "" {
		kind = defaultKind
	}
	return tier.NewPurgeHandler(&opts.PurgeOptions, func(r *http.Request) (context.Context, tier.Purge[any]) {
		return r.Context(), &purgeTier{client: client, kind: kind, namespace: opts.Namespace}
	})
}
