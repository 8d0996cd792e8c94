package gaesession

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	stdlog "log"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icza/gaesession/v2/internal/gaelimits"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
	aelog "google.golang.org/appengine/v2/log"
)

// NewMemcacheStore returns a new, GAE Memcache session Store with default
// options. Default values of options are listed in the MemcacheStoreOptions
// type.
//
// Important! Since accessing the Memcache relies on the App Engine context,
// which is bound to an http.Request, the returned Store can only be used
// for the lifetime of a request, and must be closed at its end.
func NewMemcacheStore(ctx context.Context) session.Store {
	return NewMemcacheStoreOptions(ctx, nil)
}

// NewMemcacheStoreOptions returns a new, GAE Memcache session Store with the
// specified options. A nil o means the defaults.
//
// Important! Since accessing the Memcache relies on the App Engine context,
// which is bound to an http.Request, the returned Store can only be used
// for the lifetime of a request, and must be closed at its end.
func NewMemcacheStoreOptions(ctx context.Context, o *MemcacheStoreOptions) session.Store {
	s := &memcacheStore{
		ctx:    ctx,
		logger: logger{ctx: ctx},
		cfg:    newConfig(o),
		cache:  tier.Memcache{},
	}
	s.dsTier.kind = s.cfg.kind
	s.durable = &s.dsTier
	s.sessions = s.first[:0]
	return s
}

// SaveError returns the latest error that kept store from saving a session
// or from removing one, or nil if every save and removal made through store
// so far succeeded. session.Store's methods return nothing, so this is how
// an app learns, after Close (or after Remove, for a logout), that a
// change was not stored; the same failures are logged.
//
// The error's text names the session by its LogID, never by its ID. It
// wraps the service's error where there is one (errors.Is and errors.As
// see it; its own text may contain the ID). A session that another request
// removed meanwhile is no error: that request's logout wins by design.
// With AsyncDatastoreSave, the Datastore part of a save finishes after
// Close; call WaitForAsyncSaves first to see its failure. store must come
// from NewMemcacheStore or NewMemcacheStoreOptions; for any other store
// SaveError returns nil.
func SaveError(store session.Store) error {
	s, ok := store.(*memcacheStore)
	if !ok {
		return nil
	}
	return s.failure.get()
}

// failureRecord keeps a store's latest save failure. Asynchronous saves
// write it after the request, so it has a lock of its own.
type failureRecord struct {
	mu  sync.Mutex
	err error
}

func (f *failureRecord) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *failureRecord) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// storeError is the error SaveError returns.
type storeError struct {
	msg   string
	cause error
}

func (e *storeError) Error() string { return e.msg }
func (e *storeError) Unwrap() error { return e.cause }

// newStoreError describes a failure to save (or remove) the session id:
// what failed, and the cause if any, with id and others (the sessions of
// the same batch call, whose error it may be) redacted.
func newStoreError(id, what string, cause error, others ...string) error {
	msg := "gaesession: " + logID(id) + ": " + what
	if cause != nil {
		msg += ": " + redact(cause, append([]string{id}, others...)...)
	}
	return &storeError{msg: msg, cause: cause}
}

// Limits of App Engine that the store respects.
const (
	maxMemcacheKey = gaelimits.MemcacheMaxKeyBytes
	maxMemcacheTTL = 30 * 24 * time.Hour
	minIDLength    = 8
	maxIDLength    = 256
)

// ValidID reports whether id could have been made by icza/session, and so
// is worth a lookup. The store treats any other ID as unknown without
// making an RPC: IDs arrive in cookies, which anyone can forge.
//
// icza/session makes an ID by encoding IDLength random bytes (default 18)
// with base64.URLEncoding. A valid ID therefore has a length that is a
// multiple of 4, between 8 and 256 characters (IDLength 6 to 192), uses
// only the characters A-Z, a-z, 0-9, '-' and '_', and may end in one or
// two '=' padding characters.
func ValidID(id string) bool {
	n := len(id)
	if n < minIDLength || n > maxIDLength || n%4 != 0 {
		return false
	}
	pad := 0
	for i := 0; i < n; i++ {
		c := id[i]
		switch {
		case c == '=':
			pad++
			if i < n-2 {
				return false
			}
		case pad > 0:
			return false
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// memcacheKey is KeyPrefix+id, or a hash of it when that exceeds
// Memcache's key limit. The hash is deterministic, so every instance maps a
// session to the same key.
func (c *config) memcacheKey(id string) string {
	key := c.keyPrefix + id
	if len(key) <= maxMemcacheKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "gaesession-sha256:" + hex.EncodeToString(sum[:])
}

// logID identifies a session in logs without revealing it: session IDs
// are bearer secrets, so only a short hash is written. Hash a cookie value
// the same way to find its log lines.
func logID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "sess#" + hex.EncodeToString(sum[:4])
}

// redact returns err's text with every one of ids in it replaced by its
// LogID. Session IDs are bearer secrets and must not reach the logs,
// whatever a service puts into its error messages (the Datastore's, for
// one, may quote the key, whose name is the ID). Every log line of this
// package that includes an error passes it through redact. IDs shorter
// than a valid one are left alone, so that a short name does not garble
// the message.
func redact(err error, ids ...string) string {
	if err == nil {
		return "<nil>"
	}
	msg := err.Error()
	for _, id := range ids {
		if len(id) >= minIDLength && strings.Contains(msg, id) {
			msg = strings.ReplaceAll(msg, id, logID(id))
		}
	}
	return msg
}

// LogID returns the name under which the store's log lines refer to the
// session with the given ID: "sess#" and the first 8 hex digits of the
// SHA-256 of the ID. Whole session IDs never appear in logs.
func LogID(id string) string { return logID(id) }

// Log levels, as appengine/v2/log numbers them.
const (
	levelDebug = iota
	levelInfo
	levelWarning
	levelError
)

// logHook, when set (tests only), receives every log line the store writes.
var logHook atomic.Pointer[func(level int, msg string)]

// logger logs for one request's context.
type logger struct {
	ctx    context.Context
	stdLog atomic.Bool // appengine/v2/log is unusable with ctx
}

// logf writes through appengine/v2/log. That package panics on a context
// that did not pass through appengine.Middleware; such contexts fall back
// to the standard library's logger, and once a store has seen the panic it
// goes straight to the fallback.
func (l *logger) logf(level int, format string, args ...any) {
	msg := "gaesession: " + fmt.Sprintf(format, args...)
	if h := logHook.Load(); h != nil {
		(*h)(level, msg)
	}
	if !l.stdLog.Load() && l.aeLog(level, msg) {
		return
	}
	l.stdLog.Store(true)
	stdlog.Printf("%s: %s", levelNames[level], msg)
}

var levelNames = [...]string{"DEBUG", "INFO", "WARNING", "ERROR"}

func (l *logger) aeLog(level int, msg string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	switch level {
	case levelDebug:
		aelog.Debugf(l.ctx, "%s", msg)
	case levelInfo:
		aelog.Infof(l.ctx, "%s", msg)
	case levelWarning:
		aelog.Warningf(l.ctx, "%s", msg)
	default:
		aelog.Errorf(l.ctx, "%s", msg)
	}
	return true
}

// retry runs op up to the configured number of attempts, stopping early on
// success or on an error that another attempt cannot fix.
func (s *memcacheStore) retry(ctx context.Context, op func() error) error {
	var err error
	for i := 0; i < s.cfg.retries; i++ {
		if err = op(); err == nil || !retryable(ctx, err) {
			return err
		}
	}
	return err
}

// retryable tells whether an error may go away on another attempt.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch {
	case errors.Is(err, errCacheMiss),
		errors.Is(err, errNotStored),
		errors.Is(err, errCASConflict),
		errors.Is(err, errNoSuchEntity),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return false
	}
	// The client's own timer, set from the context's deadline, may fire
	// an instant before the context reports its deadline passed; such a
	// timeout (or the service's) is not retried either.
	if appengine.IsTimeoutError(err) {
		return false
	}
	// A tier of the nested module marks what another attempt cannot fix
	// (a Cloud Datastore INVALID_ARGUMENT, say); see internal/tier.
	var permanent interface{ Permanent() bool }
	if errors.As(err, &permanent) && permanent.Permanent() {
		return false
	}
	var me appengine.MultiError
	if errors.As(err, &me) {
		for _, e := range me {
			if e != nil && retryable(ctx, e) {
				return true
			}
		}
		return false
	}
	if service, code, ok := apiErrorCode(err); ok {
		return !permanentAPIError[service][code]
	}
	return true
}

// permanentAPIError lists application error codes that mean the request
// itself is wrong, so resending it cannot succeed.
var permanentAPIError = map[string]map[int32]bool{
	"memcache": {
		3: true, // PERMISSION_DENIED
		6: true, // INVALID_VALUE: key or value too large
	},
	"datastore_v3": {
		1: true, // BAD_REQUEST: e.g. entity too large
		4: true, // NEED_INDEX
		6: true, // PERMISSION_DENIED
	},
}

// apiErrorCode reads the service and code of an appengine/v2 API error.
// Its type lives in an internal package, so it is read by reflection.
func apiErrorCode(err error) (service string, code int32, ok bool) {
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().Type().Name() != "APIError" {
		return "", 0, false
	}
	sv, cv := v.Elem().FieldByName("Service"), v.Elem().FieldByName("Code")
	if sv.Kind() != reflect.String || cv.Kind() != reflect.Int32 {
		return "", 0, false
	}
	return sv.String(), int32(cv.Int()), true
}
