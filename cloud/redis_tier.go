package cloud

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/redis/go-redis/v9"
	"google.golang.org/appengine/v2"
)

// redisCache is the session store's cache tier on Redis (Memorystore for
// Redis or Valkey), through a go-redis client. It holds what Memcache
// holds, byte for byte, under the same keys; the notes of cache.go in
// github.com/icza/gaesession/v2 ("How a Redis tier maps onto cacheTier")
// are its design. Each call is one round trip: a read one HMGET, a write
// one EVALSHA of writeScript, a batch one pipeline.
type redisCache struct {
	client redis.UniversalClient
}

// newRedisCache returns the cache tier on the Redis server (or cluster)
// that client speaks to. The client's timeouts bound each call; a call
// that times out returns an error that appengine.IsTimeoutError
// recognises, which the store does not retry, as it retries no App Engine
// timeout.
func newRedisCache(client redis.UniversalClient) *redisCache {
	return &redisCache{client: client}
}

var _ tier.Cache = (*redisCache)(nil)

// The hash fields of a key.
const (
	fieldValue = "v" // the bytes Memcache would hold
	fieldFlags = "f" // the flags, in decimal
	fieldToken = "n" // the write's token (redisToken)
)

// The answers of writeScript.
const (
	answerStored    = "stored"
	answerNotStored = "notstored"
	answerConflict  = "conflict"
)

// writeScript is every write: set, add or compare-and-swap, atomic on the
// server, so that a conditional write is one round trip as Memcache's is.
// The old key is deleted before the hash is written, so that no field or
// TTL of another writer (or of another program's value under the key)
// survives the write. A compare-and-swap over a key that is not one of
// these hashes is a conflict: the key changed since the read.
//
// KEYS[1]: the key. ARGV: mode ("set", "add" or "cas"), value, flags,
// new token, TTL in milliseconds (0: none), token read (cas only).
var writeScript = redis.NewScript(`
local k = KEYS[1]
local mode = ARGV[1]
if mode == "add" then
	if redis.call("EXISTS", k) == 1 then return "notstored" end
elseif mode == "cas" then
	if redis.call("EXISTS", k) == 0 then return "notstored" end
	if redis.call("TYPE", k).ok ~= "hash" or redis.call("HGET", k, "n") ~= ARGV[6] then return "conflict" end
elseif mode ~= "set" then
	return redis.error_reply("gaesession: unknown write mode")
end
redis.call("DEL", k)
redis.call("HSET", k, "v", ARGV[2], "f", ARGV[3], "n", ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then redis.call("PEXPIRE", k, ttl) end
return "stored"
`)

// redisToken is the "n" of the version a read found: a compare-and-swap
// over it succeeds only if the key still holds that very write. A fresh
// random token per write, not a counter per key: a counter would start
// again after the key is evicted, and a compare-and-swap over a token read
// before a logout could then match a placeholder written after the
// tombstone was evicted (ABA). 128 random bits make a repeat as unlikely
// as a collision of Memcache's CAS ids.
type redisToken string

func newToken() string { return rand.Text() }

const (
	modeSet = "set"
	modeAdd = "add"
	modeCAS = "cas"
)

// writeArgs are writeScript's ARGV for w. The TTL is Memcache's: capped at
// 30 days (the core caps it too, so that a tombstone ends at the same time
// in both caches), in whole milliseconds; a negative one, or one under a
// millisecond, leaves the key expired at once, as Memcache leaves an item
// whose expiration is under a second.
func writeArgs(mode string, w *tier.CacheWrite) ([]any, error) {
	var tok redisToken
	if mode == modeCAS {
		t, ok := w.Token.(redisToken)
		if !ok {
			return nil, fmt.Errorf("gaesession/cloud: compare-and-swap over a token of another cache (%T)", w.Token)
		}
		tok = t
	}
	ttl := int64(0)
	if w.TTL != 0 {
		ttl = min(w.TTL, maxCacheTTL).Milliseconds()
		ttl = max(ttl, 1)
	}
	return []any{mode, w.Value, strconv.FormatUint(uint64(w.Flags), 10), newToken(), ttl, string(tok)}, nil
}

// answerErr is the error of one write from the script's answer.
func answerErr(res any, err error) error {
	if err != nil {
		return wrapTimeout(err)
	}
	switch res {
	case answerStored:
		return nil
	case answerNotStored:
		return tier.ErrNotStored
	case answerConflict:
		return tier.ErrCASConflict
	}
	return fmt.Errorf("gaesession/cloud: unexpected answer from the write script: %v", res)
}

// redisTimeout is a Redis error that is a timeout (a network deadline, or
// the context's). appengine.IsTimeoutError does not unwrap errors: it
// asks the error itself for IsTimeout, which this type answers.
type redisTimeout struct{ err error }

func (e redisTimeout) Error() string   { return "redis: " + e.err.Error() }
func (e redisTimeout) Unwrap() error   { return e.err }
func (e redisTimeout) IsTimeout() bool { return true }

// wrapTimeout wraps err in redisTimeout if it is a timeout.
func wrapTimeout(err error) error {
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return redisTimeout{err}
	}
	return err
}

// readOf is the tier.CacheRead of an HMGET of v, f and n; false if the
// key holds no item of this tier (missing, or a hash without a token).
func readOf(vals []any) (tier.CacheRead, bool) {
	if len(vals) != 3 {
		return tier.CacheRead{}, false
	}
	v, okV := vals[0].(string)
	f, okF := vals[1].(string)
	n, okN := vals[2].(string)
	if !okV || !okN {
		return tier.CacheRead{}, false
	}
	var flags uint64
	if okF {
		// A flag this tier did not write reads as 0 (no deadline known),
		// as an item of the original package without flags does.
		flags, _ = strconv.ParseUint(f, 10, 32)
	}
	return tier.CacheRead{Value: []byte(v), Flags: uint32(flags), Token: redisToken(n)}, true
}

func (c *redisCache) Get(ctx context.Context, key string) (tier.CacheRead, error) {
	vals, err := c.client.HMGet(ctx, key, fieldValue, fieldFlags, fieldToken).Result()
	if err != nil {
		return tier.CacheRead{}, wrapTimeout(err)
	}
	r, ok := readOf(vals)
	if !ok {
		return tier.CacheRead{}, tier.ErrCacheMiss
	}
	return r, nil
}

func (c *redisCache) GetMulti(ctx context.Context, keys []string, into []*tier.CacheRead) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := c.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, fieldValue, fieldFlags, fieldToken)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if whole := wholeCallError(cmdErrs(cmds)); whole != nil {
			return whole
		}
	}
	// A key another program wrote with another type answers WRONGTYPE:
	// that item is an error of its own, as a value Memcache cannot read.
	var me appengine.MultiError
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			if me == nil {
				me = make(appengine.MultiError, len(keys))
			}
			me[i] = err
			continue
		}
		if r, ok := readOf(cmd.Val()); ok {
			*into[i] = r
		}
	}
	if me != nil {
		return me
	}
	return nil
}

func cmdErrs[C interface{ Err() error }](cmds []C) []error {
	errs := make([]error, len(cmds))
	for i, c := range cmds {
		errs[i] = c.Err()
	}
	return errs
}

// wholeCallError is the error of a pipeline as a whole: the first error
// that is not the server's answer to one command (a connection failure or
// a timeout), or nil if every error is an answer.
func wholeCallError(errs []error) error {
	for _, err := range errs {
		var answer redis.Error
		if err != nil && !errors.As(err, &answer) {
			return wrapTimeout(err)
		}
	}
	return nil
}

func (c *redisCache) write(ctx context.Context, mode string, w *tier.CacheWrite) error {
	args, err := writeArgs(mode, w)
	if err != nil {
		return err
	}
	// Run is EVALSHA, and EVAL once if the server has lost the script
	// (a restart, SCRIPT FLUSH).
	return answerErr(writeScript.Run(ctx, c.client, []string{w.Key}, args...).Result())
}

func (c *redisCache) Set(ctx context.Context, w tier.CacheWrite) error {
	return c.write(ctx, modeSet, &w)
}
func (c *redisCache) Add(ctx context.Context, w tier.CacheWrite) error {
	return c.write(ctx, modeAdd, &w)
}
func (c *redisCache) CompareAndSwap(ctx context.Context, w tier.CacheWrite) error {
	return c.write(ctx, modeCAS, &w)
}

func (c *redisCache) SetMulti(ctx context.Context, ws []tier.CacheWrite) error {
	return c.writeMulti(ctx, modeSet, ws)
}

func (c *redisCache) AddMulti(ctx context.Context, ws []tier.CacheWrite) error {
	return c.writeMulti(ctx, modeAdd, ws)
}

func (c *redisCache) CompareAndSwapMulti(ctx context.Context, ws []tier.CacheWrite) error {
	return c.writeMulti(ctx, modeCAS, ws)
}

// writeMulti writes ws in one pipeline of EVALSHAs. If the server lost the
// script, every command answers NOSCRIPT and none ran; the same pipeline
// then goes again as EVALs (a second round trip, once after a restart).
// The error is nil, an appengine.MultiError with one element per item in
// order, or the whole call's.
func (c *redisCache) writeMulti(ctx context.Context, mode string, ws []tier.CacheWrite) error {
	if len(ws) == 0 {
		return nil
	}
	errs := make([]error, len(ws))
	args := make([][]any, len(ws))
	for i := range ws {
		args[i], errs[i] = writeArgs(mode, &ws[i])
	}
	cmds, whole := c.runPipeline(ctx, ws, args, errs, false)
	if whole == nil && anyNoScript(cmds) {
		cmds, whole = c.runPipeline(ctx, ws, args, errs, true)
	}
	if whole != nil {
		return whole
	}
	failed := false
	for i, cmd := range cmds {
		if cmd == nil {
			failed = true // errs[i] from writeArgs
			continue
		}
		if errs[i] = answerErr(cmd.Result()); errs[i] != nil {
			failed = true
		}
	}
	if !failed {
		return nil
	}
	return appengine.MultiError(errs)
}

// runPipeline sends one write command per item whose arguments were made
// (cmds[i] is nil for the others), as EVALSHA, or EVAL if eval.
func (c *redisCache) runPipeline(ctx context.Context, ws []tier.CacheWrite, args [][]any, argErrs []error, eval bool) ([]*redis.Cmd, error) {
	pipe := c.client.Pipeline()
	cmds := make([]*redis.Cmd, len(ws))
	for i := range ws {
		if argErrs[i] != nil {
			continue
		}
		keys := []string{ws[i].Key}
		if eval {
			cmds[i] = writeScript.Eval(ctx, pipe, keys, args[i]...)
		} else {
			cmds[i] = writeScript.EvalSha(ctx, pipe, keys, args[i]...)
		}
	}
	if pipe.Len() == 0 {
		return cmds, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		errs := make([]error, 0, len(cmds))
		for _, cmd := range cmds {
			if cmd != nil {
				errs = append(errs, cmd.Err())
			}
		}
		if whole := wholeCallError(errs); whole != nil {
			return nil, whole
		}
	}
	return cmds, nil
}

func anyNoScript(cmds []*redis.Cmd) bool {
	for _, cmd := range cmds {
		if cmd != nil && (errors.Is(cmd.Err(), redis.ErrNoScript) || redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT")) {
			return true
		}
	}
	return false
}

// Redis returns a Redis server (Memorystore for Redis or Valkey) as a
// Cloud store's cache, through client. It holds the bytes Memcache would
// hold, under the same keys. The client's timeouts bound each call (a
// read timeout of a few hundred milliseconds suits Memorystore in the
// app's region); a call that times out is not retried.
func Redis(client redis.UniversalClient) Cache { return Cache{tier: newRedisCache(client)} }
