package aelocal

import (
	"container/list"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/icza/gaesession/v2/internal/gaelimits"
)

// DefaultMemcacheLimit is the default memory cap of memcache, in bytes.
const DefaultMemcacheLimit = 64 << 20

// memcacheMaxKeyBytes is the key limit App Engine documents for memcache. A
// request with a longer key fails as a whole with an INVALID_VALUE
// application error whose detail names the limit and the size, before any
// part of it is applied: a key the production service would refuse must not
// look as if it worked here. The item size limit (key, value and overhead
// within 1 MiB, gaelimits.MemcacheItemFits) fails only the item that breaks
// it; see mcSet.
const memcacheMaxKeyBytes = gaelimits.MemcacheMaxKeyBytes

// memcacheThirtyYears is the cut-off of expiration times, in seconds: an
// expiration (or delete lock time) below it is relative to now, one at or
// above it is an absolute Unix time, as the production service and the
// appengine/v2 client agree.
const memcacheThirtyYears = 60 * 60 * 24 * 365 * 30

// Application error codes of memcache (MemcacheServiceError.ErrorCode).
const (
	mcErrInvalidValue = 6
)

// Enum values of the memcache messages.
const (
	mcSetPolicySet     = 1
	mcSetPolicyAdd     = 2
	mcSetPolicyReplace = 3
	mcSetPolicyCAS     = 4

	mcStored    = 1
	mcNotStored = 2
	mcSetError  = 3
	mcExists    = 4

	mcDeleted  = 1
	mcNotFound = 2

	mcDecrement = 2

	mcIncrOK         = 1
	mcIncrNotChanged = 2
	mcIncrError      = 3
)

// mcKey identifies an item: keys are isolated per namespace.
type mcKey struct{ ns, key string }

// mcEntry is one cached item, or a delete-locked tombstone (lockedUntil
// set), which holds no value and makes ADD and REPLACE fail until the lock
// passes.
type mcEntry struct {
	k           mcKey
	value       []byte // never modified in place, so responses may share it
	flags       uint32
	cas         uint64
	expires     time.Time // zero: never
	lastAccess  time.Time
	lockedUntil time.Time // non-zero: a tombstone left by Delete with delete_time
	elem        *list.Element
}

func (e *mcEntry) size() int64 { return int64(len(e.k.key) + len(e.value)) }

// mcItemOverhead is what an item costs beyond its namespace, key and
// value: the entry, its LRU element and its map slot, measured on
// linux/amd64 (TestMemcacheLimitCountsEverything).
const mcItemOverhead = 256

// cost is what e counts against the memory cap: everything it holds.
func (e *mcEntry) cost() int64  { return int64(len(e.k.ns)) + e.size() + mcItemOverhead }
func (e *mcEntry) locked() bool { return !e.lockedUntil.IsZero() }

// memcacheService implements the "memcache" service: an LRU cache bounded by
// the bytes of its keys and values.
type memcacheService struct {
	now func() time.Time

	mu      sync.Mutex
	limit   int64
	used    int64 // cost of every entry, tombstones too
	items   map[mcKey]*mcEntry
	lru     *list.List // of *mcEntry, most recently used at the front
	lastCAS uint64     // never reset, so a cas_id is unique for the server's life

	hits, misses, byteHits uint64
}

func newMemcacheService(now func() time.Time) *memcacheService {
	return &memcacheService{
		now:   now,
		limit: DefaultMemcacheLimit,
		items: make(map[mcKey]*mcEntry),
		lru:   list.New(),
	}
}

// flush empties the cache, every namespace. The hit and miss counters are
// kept, as memcached's flush_all keeps them.
func (m *memcacheService) flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items = make(map[mcKey]*mcEntry)
	m.lru.Init()
	m.used = 0
}

// setLimit sets the memory cap and evicts least recently used items at once
// until the cache fits. A cap of 0 or less makes a cache that stores
// nothing. An item bigger than the whole cap is not kept: Set reports it
// STORED, as a cache that evicted it at once would.
func (m *memcacheService) setLimit(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 {
		n = 0
	}
	m.limit = n
	m.evict()
}

func (m *memcacheService) evict() {
	for m.used > m.limit {
		back := m.lru.Back()
		if back == nil {
			break
		}
		m.remove(back.Value.(*mcEntry))
	}
}

func (m *memcacheService) remove(e *mcEntry) {
	m.lru.Remove(e.elem)
	delete(m.items, e.k)
	m.used -= e.cost()
}

// lookup returns the entry for k, a tombstone included, or nil. Entries that
// expired and tombstones whose lock passed are removed on the way.
func (m *memcacheService) lookup(k mcKey, now time.Time) *mcEntry {
	e := m.items[k]
	if e == nil {
		return nil
	}
	if e.locked() {
		if now.Before(e.lockedUntil) {
			return e
		}
	} else if e.expires.IsZero() || now.Before(e.expires) {
		return e
	}
	m.remove(e)
	return nil
}

// live returns the entry for k if it holds a value, nil on a miss.
func (m *memcacheService) live(k mcKey, now time.Time) *mcEntry {
	if e := m.lookup(k, now); e != nil && !e.locked() {
		return e
	}
	return nil
}

func (m *memcacheService) touch(e *mcEntry, now time.Time) {
	e.lastAccess = now
	m.lru.MoveToFront(e.elem)
}

// store writes value under k, replacing any entry, with a fresh cas_id, and
// evicts what no longer fits. An expiry not after now removes the old entry
// and stores nothing, as if the new item expired at once.
func (m *memcacheService) store(k mcKey, value []byte, flags uint32, expires, now time.Time) {
	if old := m.items[k]; old != nil {
		m.remove(old)
	}
	if !expires.IsZero() && !now.Before(expires) {
		return
	}
	m.lastCAS++
	e := &mcEntry{k: k, value: value, flags: flags, cas: m.lastCAS, expires: expires, lastAccess: now}
	if e.cost() > m.limit {
		return
	}
	e.elem = m.lru.PushFront(e)
	m.items[k] = e
	m.used += e.cost()
	m.evict()
}

// mcTime converts an expiration_time or delete_time of the protocol to a
// time: 0 is never (the zero time), less than 30 years is seconds from now,
// anything else an absolute Unix time.
func mcTime(sec uint64, now time.Time) time.Time {
	switch {
	case sec == 0:
		return time.Time{}
	case sec < memcacheThirtyYears:
		return now.Add(time.Duration(sec) * time.Second)
	default:
		return time.Unix(int64(sec), 0)
	}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// checkItemKeys checks the key of every item of a request before any is
// served: a key over the limit fails the whole call.
func checkItemKeys(items []pmsg) error {
	for _, it := range items {
		if err := checkMemcacheKey(it.Bytes("key")); err != nil {
			return err
		}
	}
	return nil
}

func checkMemcacheKey(key []byte) error {
	if len(key) > memcacheMaxKeyBytes {
		return errorf(mcErrInvalidValue, "memcache: key of %d bytes exceeds the %d-byte limit", len(key), memcacheMaxKeyBytes)
	}
	return nil
}

// memcacheNamespaceRE is App Engine's rule for namespaces
// (namespace_manager.py's _NAMESPACE_PATTERN; the Go client's
// appengine.Namespace checks the same).
const memcacheNamespacePattern = `^[0-9A-Za-z._-]{0,100}$`

var memcacheNamespaceRE = regexp.MustCompile(memcacheNamespacePattern)

// checkNamespace refuses a namespace that App Engine's clients would not
// send. The Python stub does not check on the server side, since its
// clients do; aelocal does, because the namespaces of stored items count
// against the memory cap and a client that skips the check must not be
// able to grow them without bound. The message is namespace_manager's.
func checkNamespace(ns string) error {
	if !memcacheNamespaceRE.MatchString(ns) {
		return errorf(mcErrInvalidValue, "memcache: namespace value %s does not match regex %q", quoteShort(ns), memcacheNamespacePattern)
	}
	return nil
}

// nonNil keeps required bytes fields present when empty.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func init() {
	const p = "appengine.v2.Memcache"
	register("memcache", "Get", p+"GetRequest", p+"GetResponse", mcGet)
	register("memcache", "Set", p+"SetRequest", p+"SetResponse", mcSet)
	register("memcache", "Delete", p+"DeleteRequest", p+"DeleteResponse", mcDelete)
	register("memcache", "Increment", p+"IncrementRequest", p+"IncrementResponse", mcIncrement)
	register("memcache", "BatchIncrement", p+"BatchIncrementRequest", p+"BatchIncrementResponse", mcBatchIncrement)
	register("memcache", "FlushAll", p+"FlushRequest", p+"FlushResponse", mcFlushAll)
	register("memcache", "Stats", p+"StatsRequest", p+"StatsResponse", mcStats)
}

// mcGetMaxBytes bounds the keys and values of one Get's answer. App Engine
// caps a memcache batch at 32 MB, and a GetMulti whose items pass it was
// seen to return only the items that fit, without an error, the others
// being found by asking again (the goon library, which does so, measured
// it in production in 2019). The SDK's stub has no such bound.
const mcGetMaxBytes = 32 << 20

// mcGet answers Get. A key over the limit fails the call. Each distinct key
// is answered once. Items past mcGetMaxBytes are left out of the answer
// (the first item always comes back), as in production. for_cas adds cas_id; for_peek adds the timestamps, shows
// delete-locked keys (is_delete_locked, no value), and neither moves the
// item in the LRU order, updates its last access time nor counts in the
// hit and miss statistics.
func mcGet(s *Server, in, out pmsg) error {
	if err := checkNamespace(in.Str("name_space")); err != nil {
		return err
	}
	keys := in.BytesList("key")
	for _, k := range keys {
		if err := checkMemcacheKey(k); err != nil {
			return err
		}
	}
	ns := in.Str("name_space")
	forCas, peek := in.Bool("for_cas"), in.Bool("for_peek")
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(keys))
	size := 0
	for _, kb := range keys {
		key := string(kb)
		if seen[key] {
			continue
		}
		seen[key] = true
		e := m.lookup(mcKey{ns, key}, now)
		if e != nil && out.Len("item") > 0 && size+len(kb)+len(e.value) > mcGetMaxBytes {
			break
		}
		if e != nil {
			size += len(kb) + len(e.value)
		}
		if e == nil || (e.locked() && !peek) {
			if !peek {
				m.misses++
			}
			continue
		}
		it := out.AppendMsg("item")
		it.Set("key", nonNil(kb))
		if e.locked() {
			it.Set("value", []byte{})
			it.Set("is_delete_locked", true)
			it.Mutable("timestamps").Set("delete_lock_time_sec", e.lockedUntil.Unix())
			continue
		}
		it.Set("value", nonNil(e.value))
		it.Set("flags", e.flags)
		if forCas {
			it.Set("cas_id", e.cas)
		}
		if peek {
			ts := it.Mutable("timestamps")
			ts.Set("expiration_time_sec", unixOrZero(e.expires))
			ts.Set("last_access_time_sec", e.lastAccess.Unix())
			continue
		}
		m.hits++
		m.byteHits += uint64(len(kb) + len(e.value))
		m.touch(e, now)
	}
	return nil
}

// mcSet answers Set. A key over the limit fails the whole call and nothing
// is stored. Otherwise each item gets a status:
//
//   - an item too big for production (its key, its value and 73 bytes of
//     overhead over 1 MiB, gaelimits.MemcacheItemFits) gets ERROR and is
//     not stored, whatever its policy; the value it would have replaced
//     stays, and the other items of the call are served. The client reports
//     ERROR as ErrServerError, within a MultiError from SetMulti. (The SDK's
//     stub refuses values over 1,048,253 bytes whatever the key's length, by
//     failing an assertion after storing the items before it; production
//     counts the key and answers per item.)
//   - SET stores always (and ends a delete lock);
//   - ADD stores only if the key holds nothing and is not delete-locked;
//   - REPLACE stores only if the key holds a value;
//   - CAS stores only if the key holds a value whose cas_id is the one sent
//     (EXISTS if it differs; NOT_STORED if the key holds nothing, is
//     delete-locked or the item carries no cas_id).
//
// An item whose expiration is already past when it is stored reports STORED
// yet is not kept, and the value it replaced is gone: App Engine behaves as
// if it stored the item and expired it at once.
func mcSet(s *Server, in, out pmsg) error {
	if err := checkNamespace(in.Str("name_space")); err != nil {
		return err
	}
	items := in.Msgs("item")
	if err := checkItemKeys(items); err != nil {
		return err
	}
	ns := in.Str("name_space")
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range items {
		k := mcKey{ns, it.Str("key")}
		if !gaelimits.MemcacheItemFits(len(k.key), len(it.Bytes("value"))) {
			out.Append("set_status", mcSetError)
			continue
		}
		cur := m.lookup(k, now)
		hasValue := cur != nil && !cur.locked()
		status := mcStored
		switch it.Int("set_policy") {
		case mcSetPolicySet:
		case mcSetPolicyAdd:
			if cur != nil {
				status = mcNotStored
			}
		case mcSetPolicyReplace:
			if !hasValue {
				status = mcNotStored
			}
		case mcSetPolicyCAS:
			switch {
			case !hasValue || !it.Has("cas_id"):
				status = mcNotStored
			case cur.cas != it.Uint("cas_id"):
				status = mcExists
			}
		default:
			status = mcSetError
		}
		if status == mcStored {
			m.store(k, nonNil(it.Bytes("value")), uint32(it.Uint("flags")), mcTime(it.Uint("expiration_time"), now), now)
		}
		out.Append("set_status", status)
	}
	return nil
}

// mcDelete answers Delete. A key over the limit fails the whole call. A key
// that holds no value reports NOT_FOUND. A delete_time (relative seconds or
// absolute Unix time, as expiration times) leaves the key delete-locked
// until then: Get misses, ADD, REPLACE and CAS are refused, SET works.
func mcDelete(s *Server, in, out pmsg) error {
	if err := checkNamespace(in.Str("name_space")); err != nil {
		return err
	}
	items := in.Msgs("item")
	if err := checkItemKeys(items); err != nil {
		return err
	}
	ns := in.Str("name_space")
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range items {
		e := m.live(mcKey{ns, it.Str("key")}, now)
		if e == nil {
			out.Append("delete_status", mcNotFound)
			continue
		}
		m.remove(e)
		if lock := mcTime(it.Uint("delete_time"), now); !lock.IsZero() && now.Before(lock) {
			t := &mcEntry{k: e.k, lockedUntil: lock, lastAccess: now}
			t.elem = m.lru.PushFront(t)
			m.items[t.k] = t
			m.used += t.cost()
			m.evict()
		}
		out.Append("delete_status", mcDeleted)
	}
	return nil
}

// increment applies one MemcacheIncrementRequest in namespace ns. It returns
// ok false on a miss without initial_value. A missing (or delete-locked) key
// with initial_value is created holding it, with initial_flags and no
// expiry, before the delta applies. Increments wrap at 2^64; decrements stop
// at 0. m.mu must be held.
func (m *memcacheService) increment(ns string, req pmsg, now time.Time) (newValue uint64, ok bool, err error) {
	k := mcKey{ns, req.Str("key")}
	e := m.live(k, now)
	var cur uint64
	flags, expires := uint32(0), time.Time{}
	if e == nil {
		if !req.Has("initial_value") {
			return 0, false, nil
		}
		cur = req.Uint("initial_value")
		flags = uint32(req.Uint("initial_flags"))
	} else {
		v, perr := strconv.ParseUint(string(e.value), 10, 64)
		if perr != nil {
			return 0, false, errorf(mcErrInvalidValue, "memcache: cannot increment key %q: its value is not a decimal unsigned 64-bit integer", k.key)
		}
		cur, flags, expires = v, e.flags, e.expires
	}
	delta := req.Uint("delta")
	if req.Int("direction") == mcDecrement {
		if delta > cur {
			cur = 0
		} else {
			cur -= delta
		}
	} else {
		cur += delta // wraps at 2^64
	}
	m.store(k, []byte(strconv.FormatUint(cur, 10)), flags, expires, now)
	return cur, true, nil
}

// mcIncrement answers Increment. A miss without initial_value answers with
// no new_value, which the client reports as ErrCacheMiss. A value that is
// not a decimal uint64 fails the call with INVALID_VALUE, as does a key
// over the limit.
func mcIncrement(s *Server, in, out pmsg) error {
	if err := checkNamespace(in.Str("name_space")); err != nil {
		return err
	}
	if err := checkMemcacheKey(in.Bytes("key")); err != nil {
		return err
	}
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok, err := m.increment(in.Str("name_space"), in, now)
	if err != nil {
		return err
	}
	if !ok {
		out.Set("increment_status", mcIncrNotChanged)
		return nil
	}
	out.Set("new_value", v)
	out.Set("increment_status", mcIncrOK)
	return nil
}

// mcBatchIncrement answers BatchIncrement with one response per item: OK
// with new_value, NOT_CHANGED on a miss, ERROR for a value that is not a
// decimal uint64. A key over the limit fails the whole call. Items use the
// request's name_space unless they set their own.
func mcBatchIncrement(s *Server, in, out pmsg) error {
	items := in.Msgs("item")
	if err := checkItemKeys(items); err != nil {
		return err
	}
	ns := in.Str("name_space")
	if err := checkNamespace(ns); err != nil {
		return err
	}
	for _, it := range items {
		if err := checkNamespace(it.Str("name_space")); err != nil {
			return err
		}
	}
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range items {
		itemNS := ns
		if it.Has("name_space") {
			itemNS = it.Str("name_space")
		}
		r := out.AppendMsg("item")
		v, ok, err := m.increment(itemNS, it, now)
		switch {
		case err != nil:
			r.Set("increment_status", mcIncrError)
		case !ok:
			r.Set("increment_status", mcIncrNotChanged)
		default:
			r.Set("new_value", v)
			r.Set("increment_status", mcIncrOK)
		}
	}
	return nil
}

func mcFlushAll(s *Server, in, out pmsg) error {
	s.memcache.flush()
	return nil
}

// mcStats answers Stats. hits, misses and byte_hits (bytes of the keys and
// values returned, as the SDK's stub counts them) count Gets since the
// server started, peeks not: a peek leaves an item's access untouched, and
// aelocal keeps it out of the hit counts as well (the SDK's stub counts
// peeks as hits; production's choice is not documented); items and bytes
// (keys plus values) describe the live items of all namespaces;
// oldest_item_age is the seconds since the least recently used live item
// was last accessed.
func mcStats(s *Server, in, out pmsg) error {
	m := s.memcache
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var items, bytes uint64
	var oldest time.Time
	for el := m.lru.Back(); el != nil; {
		e := el.Value.(*mcEntry)
		el = el.Prev()
		if m.live(e.k, now) == nil {
			continue
		}
		if oldest.IsZero() {
			oldest = e.lastAccess
		}
		items++
		bytes += uint64(e.size())
	}
	var age uint32
	if !oldest.IsZero() && now.After(oldest) {
		secs := now.Sub(oldest) / time.Second
		if secs > 1<<32-1 {
			secs = 1<<32 - 1
		}
		age = uint32(secs)
	}
	st := out.Mutable("stats")
	st.Set("hits", m.hits)
	st.Set("misses", m.misses)
	st.Set("byte_hits", m.byteHits)
	st.Set("items", items)
	st.Set("bytes", bytes)
	st.Set("oldest_item_age", age)
	return nil
}
