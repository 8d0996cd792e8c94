package tier

import (
	"context"
	"net/http"

	"github.com/icza/session"
)

// The nested module builds stores over its own tiers through the hooks
// below, which the store's package sets in an init. The other ways were
// worse: moving the whole core into an internal package would move twenty
// files and the tests that reach into it, for no gain to the store's users;
// exporting a constructor over the tiers would make the seam an API
// promise. A package that imports the store's package (the nested module's
// do, for its options) finds the hooks set. Their option types are the
// store's (gaesession.MemcacheStoreOptions and gaesession.PurgeOptions),
// which this package cannot name, since the store imports it: a hook is
// kept as an any and called through a generic function, so that a caller
// passes the store's own option types and the compiler infers them.

// StoreFunc builds the session core of one request over cache and durable
// (nil: no durable tier, the core's OnlyMemcache mode), configured by o
// (nil: the defaults).
type StoreFunc[O any] func(ctx context.Context, cache Cache, durable Durable, o *O) session.Store

// PurgeFunc builds the purge's handler, configured by o (nil: the
// defaults): for each request it serves, tierFor gives the context the
// run uses and the purge tier of one run.
type PurgeFunc[P any] func(o *P, tierFor func(r *http.Request) (context.Context, Purge[any])) http.HandlerFunc

var (
	storeHook   any // a StoreFunc
	purgeHook   any // a PurgeFunc
	logHookSwap func(h *func(level int, msg string)) *func(level int, msg string)
)

// SetHooks is called by the store's package in its init.
func SetHooks[O, P any](store StoreFunc[O], purge PurgeFunc[P]) {
	storeHook, purgeHook = store, purge
}

// NewStore builds the session core over cache and durable (see StoreFunc);
// o is a *gaesession.MemcacheStoreOptions.
func NewStore[O any](ctx context.Context, cache Cache, durable Durable, o *O) session.Store {
	return storeHook.(StoreFunc[O])(ctx, cache, durable, o)
}

// NewPurgeHandler builds the purge's handler (see PurgeFunc); o is a
// *gaesession.PurgeOptions.
func NewPurgeHandler[P any](o *P, tierFor func(r *http.Request) (context.Context, Purge[any])) http.HandlerFunc {
	return purgeHook.(PurgeFunc[P])(o, tierFor)
}

// SetLogHookSwapper is called by the store's package in its init, with the
// function that swaps its log hook.
func SetLogHookSwapper(swap func(h *func(level int, msg string)) *func(level int, msg string)) {
	logHookSwap = swap
}

// SwapLogHook makes h (nil: none) receive every log line the store
// writes, from then on, and returns the previous hook. It is for tests
// (the nested module's check that no session ID reaches a log line);
// level is 0 for debug up to 3 for error.
func SwapLogHook(h *func(level int, msg string)) *func(level int, msg string) {
	return logHookSwap(h)
}
