package gaesession

import (
	"time"

	"google.golang.org/appengine/v2/memcache"
)

// MemcacheStoreOptions defines options that may be passed when creating a
// new Memcache session store. All fields are optional; the zero value of a
// field selects its default.
type MemcacheStoreOptions struct {
	// KeyPrefix is prepended to the session ID to form the Memcache key;
	// default is the empty string. A key longer than Memcache's 250-byte
	// limit is replaced by a fixed-length hash of itself, so a long prefix
	// never makes Memcache calls fail.
	KeyPrefix string

	// Retries is the number of attempts made for a Memcache or Datastore
	// operation that fails with a general service error; default is 3.
	// Errors that another attempt cannot fix (a cache miss, a value that
	// is too large, a cancelled context, a malformed request) are not
	// retried.
	Retries int

	// Codec marshals a Session to a byte slice and back; default is
	// &memcache.Gob. The same bytes go to Memcache and to the Datastore.
	Codec *memcache.Codec

	// OnlyMemcache tells the store to keep sessions in Memcache only and
	// not to back them up in the Datastore. Memcache may evict items at any
	// time, so such sessions may be lost; default is false. A logout is
	// then only as final as its tombstone lives: if Memcache evicts it
	// before a request that loaded the session earlier writes it back, the
	// session is stored again (with a Datastore, the removal marker keeps
	// it out; see Remove).
	OnlyMemcache bool

	// AsyncDatastoreSave makes Close save to the Datastore in a new
	// goroutine, so the response does not wait for it; default is false
	// (Close waits for the Datastore). An asynchronous save outlives the
	// request: it runs on a context detached from the request's
	// cancellation, bounded by AsyncSaveTimeout, and logs its failure.
	// WaitForAsyncSaves waits for the saves in flight. Not used if
	// OnlyMemcache is true.
	AsyncDatastoreSave bool

	// DSEntityName is the Datastore kind of session entities; default is
	// "sess_". Not used if OnlyMemcache is true.
	DSEntityName string

	// ExpirySlack is the fraction of a session's Timeout during which a
	// request that only reads the session does not write it back; default
	// is 0.1.
	//
	// A session times out, as icza/session defines it, once it has not
	// been accessed for longer than its Timeout: Get then returns nil.
	// Each stored copy records its deadline (the access it was written
	// with, plus Timeout). A request that accessed the session without
	// changing it writes it back only once less than
	// (1-ExpirySlack)*Timeout of that deadline is left, so most read-only
	// requests cost a single Memcache get, and the reads in between are
	// not recorded. Hence a session accessed at least once per
	// (1-ExpirySlack)*Timeout never times out, and one idle for longer than
	// Timeout always has. A negative value means no slack: every accessed
	// session is written back on Close, as the original package did, and
	// the Timeout counts from the very last access. A value of 1 or more
	// means reads never push the deadline back.
	ExpirySlack float64

	// MergeConcurrentUpdates changes what happens when two requests (on
	// two instances, say) change the same session at once. Every store
	// writes a session it loaded with Memcache compare-and-swap, so that
	// no request can undo a logout; without this option, a request that
	// finds the session was written since it loaded it writes its own
	// version over the newer one: the last to close wins and the other's
	// changes are lost, as in the original package (a request that keeps
	// meeting newer copies gives up after 3*(Retries+2) attempts and logs
	// that Memcache did not get its version; the Datastore has it). With
	// it, the request
	// applies its own attribute changes to that newer version instead:
	// changes to different attributes both survive, and for one attribute
	// the later writer wins. Each merge is logged at warning level. A
	// request that keeps colliding gives up after Retries+2 attempts and
	// logs that its changes were not saved, rather than overwrite the
	// others'. The Datastore save of a changed session waits for Memcache
	// and is followed by a Memcache get that makes sure the Datastore ends
	// with the merged version, whatever order concurrent puts land in;
	// each conflict costs a Memcache get and set more. Default is false.
	MergeConcurrentUpdates bool

	// AsyncSaveTimeout bounds one asynchronous Datastore save; default is
	// 30 seconds.
	AsyncSaveTimeout time.Duration
}

// Defaults of MemcacheStoreOptions.
const (
	defaultRetries          = 3
	defaultDSEntityName     = "sess_"
	defaultExpirySlack      = 0.1
	defaultAsyncSaveTimeout = 30 * time.Second
)

// SessEntity models the session entity saved in the Datastore. Its key is a
// named key without parent: kind DSEntityName, name the session ID.
type SessEntity struct {
	// Expires is when the session expires unless accessed again.
	Expires time.Time `datastore:"exp"`
	// Value is the session marshalled by the store's codec.
	Value []byte `datastore:"val"`
}

// config is MemcacheStoreOptions with the defaults applied.
type config struct {
	keyPrefix        string
	retries          int
	codec            memcache.Codec
	gob              bool // codec is memcache.Gob (see gobdecoder.go)
	onlyMemcache     bool
	async            bool
	kind             string
	slack            float64
	merge            bool
	asyncSaveTimeout time.Duration
}

func newConfig(o *MemcacheStoreOptions) config {
	if o == nil {
		o = &MemcacheStoreOptions{}
	}
	c := config{
		keyPrefix:        o.KeyPrefix,
		retries:          o.Retries,
		codec:            memcache.Gob,
		onlyMemcache:     o.OnlyMemcache,
		async:            o.AsyncDatastoreSave,
		kind:             o.DSEntityName,
		slack:            o.ExpirySlack,
		merge:            o.MergeConcurrentUpdates,
		asyncSaveTimeout: o.AsyncSaveTimeout,
	}
	if c.retries <= 0 {
		c.retries = defaultRetries
	}
	if o.Codec != nil {
		c.codec = *o.Codec
	}
	c.gob = isGob(c.codec)
	if c.kind == "" {
		c.kind = defaultDSEntityName
	}
	switch {
	case c.slack == 0:
		c.slack = defaultExpirySlack
	case c.slack < 0:
		c.slack = 0
	}
	if c.asyncSaveTimeout <= 0 {
		c.asyncSaveTimeout = defaultAsyncSaveTimeout
	}
	return c
}

// putFirst tells whether a flush puts to the Datastore before it writes
// Memcache (the default mode; see flush).
func (c *config) putFirst() bool { return !c.onlyMemcache && !c.async && !c.merge }
