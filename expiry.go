package gaesession

import (
	"math"
	"time"

	"github.com/icza/session"
)

// Idle expiry, as icza/session defines it: a session times out once it has
// not been accessed for longer than its Timeout, that is when
// now - Accessed() > Timeout(). A zero or negative Timeout therefore means
// the session times out as soon as any time has passed (icza/session's
// NewSessionOptions turns a zero Timeout into 30 minutes, so such sessions
// come only from stored values or other Session implementations).
//
// Each stored copy records its idle deadline, the access it was written
// with plus Timeout: in the Memcache item's flags (whole seconds) and in the
// Datastore entity's "exp". Get drops a copy whose deadline has passed.
// Reads that find the deadline still far off are not written back (see
// ExpirySlack), so the deadline reflects the last recorded access.

// idleDeadline is when a session last accessed at accessed times out. Time
// arithmetic saturates, so a Timeout of math.MaxInt64 is no overflow.
func idleDeadline(accessed time.Time, timeout time.Duration) time.Time {
	return accessed.Add(timeout)
}

// scaleDuration returns d*f, saturating instead of overflowing.
func scaleDuration(d time.Duration, f float64) time.Duration {
	x := float64(d) * f
	switch {
	case x >= math.MaxInt64:
		return math.MaxInt64
	case x <= math.MinInt64:
		return math.MinInt64
	}
	return time.Duration(x)
}

// refreshDue tells whether a stored copy whose deadline is stored must be
// written again by a request that accessed the session now, although
// nothing changed: once less than (1-ExpirySlack)*Timeout of its deadline
// is left. A session accessed at least once per (1-ExpirySlack)*Timeout
// thus never times out.
func (c *config) refreshDue(stored, now time.Time, timeout time.Duration) bool {
	return stored.Sub(now) < scaleDuration(timeout, 1-c.slack)
}

// flagsBeyond is the largest expiry Memcache item flags can carry (they are
// 32 bits of Unix seconds, so early 2106). Flags with this value mean "at
// or after it".
var flagsBeyond = time.Unix(math.MaxUint32, 0)

// expiryFlags encodes an idle deadline into Memcache item flags, which the
// original package leaves at zero and ignores: a new instance learns the
// deadline of a cached copy without another RPC, and an old one is
// unaffected. Deadlines are rounded down to the second, so a copy is never
// served after its deadline.
func expiryFlags(t time.Time) uint32 {
	sec := t.Unix()
	if sec <= 0 {
		return 1
	}
	if sec >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(sec)
}

// flagsDeadline reads the idle deadline of a Memcache copy. Flags of zero
// come from the original package, which records none: then the session's
// own Accessed()+Timeout() is the deadline. Flags at their maximum say "in
// 2106 or later": then the session's own figures tell how much later.
// known is false for copies of the original package, which a new instance
// rewrites (with flags) the first time it reads them.
func flagsDeadline(flags uint32, sess session.Session) (deadline time.Time, known bool) {
	switch flags {
	case 0:
		return idleDeadline(sess.Accessed(), sess.Timeout()), false
	case math.MaxUint32:
		d := idleDeadline(sess.Accessed(), sess.Timeout())
		if d.Before(flagsBeyond) {
			d = flagsBeyond
		}
		return d, true
	}
	return time.Unix(int64(flags), 0), true
}

// memcacheTTL is the Memcache expiration of a copy with the given deadline,
// written at now (before the deadline): the time left, rounded up to whole
// seconds (the store checks the deadline itself), at most 30 days. Longer
// expirations are read as relative by App Engine but as absolute times by
// memcached-like servers; 30 days means the same to all, and the Datastore
// carries longer sessions.
func memcacheTTL(deadline, now time.Time) time.Duration {
	d := deadline.Sub(now)
	if d >= maxMemcacheTTL {
		return maxMemcacheTTL
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	if d < time.Second {
		d = time.Second
	}
	return d
}
