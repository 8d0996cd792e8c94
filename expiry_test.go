package gaesession

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

func TestReadOnlyRequestCostsOneMemcacheGet(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	e.rpcs()
	for i := 0; i < 100; i++ {
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
		})
	}
	assert.Equal(t, map[string]int64{"memcache.Get": 100}, e.rpcs())
}

func TestAlwaysWriteWithNegativeSlack(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	o := &MemcacheStoreOptions{ExpirySlack: -1}
	id := e.newSession(o, time.Hour)
	e.rpcs()
	for i := 0; i < 10; i++ {
		clock.Advance(time.Second)
		e.request(o, func(st session.Store) {
			require.NotNil(t, st.Get(id))
		})
	}
	assert.Equal(t, map[string]int64{"memcache.Get": 10, "memcache.Set": 10, "datastore_v3.Put": 10}, e.rpcs())
}

// 1,000 read-only requests spread over one timeout: at most 10 datastore
// puts, and at most 1.05 RPCs per request.
func TestReadOnlyRequestsRefreshRarely(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	const timeout = time.Hour
	id := e.newSession(nil, timeout)
	e.rpcs()
	for i := 0; i < 1000; i++ {
		clock.Advance(timeout / 1000)
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
		})
	}
	stats := e.rpcs()
	assert.Equal(t, int64(1000), stats["memcache.Get"])
	assert.LessOrEqual(t, stats["datastore_v3.Put"], int64(10), "%v", stats)
	assert.Equal(t, stats["datastore_v3.Put"], stats["memcache.Set"], "a refresh writes both tiers")
	assert.LessOrEqual(t, float64(total(stats, ""))/1000, 1.05, "%v", stats)
}

func TestExpiryRefreshIsDueOnceLessThanPartOfTimeoutRemains(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, time.Hour) // deadline: 60 minutes from now
	e.rpcs()

	clock.Advance(5 * time.Minute) // 55 minutes left, more than 0.9 hours: no write
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())

	clock.Advance(2 * time.Minute) // 53 minutes left: refresh
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs())

	clock.Advance(2 * time.Minute) // refreshed 2 minutes ago: no write
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
}

// expiryModes are the configurations the expiry contract holds in; evict
// empties Memcache before every request, so the Datastore alone answers.
var expiryModes = []struct {
	name  string
	opts  *MemcacheStoreOptions
	evict bool
}{
	{"default", nil, false},
	{"datastore only", nil, true},
	{"merge", &MemcacheStoreOptions{MergeConcurrentUpdates: true}, false},
	{"async", &MemcacheStoreOptions{AsyncDatastoreSave: true}, false},
	{"negative slack", &MemcacheStoreOptions{ExpirySlack: -1}, false},
	{"only memcache", &MemcacheStoreOptions{OnlyMemcache: true}, false},
	{"slack 0.5", &MemcacheStoreOptions{ExpirySlack: 0.5}, false},
}

// The expiry contract: accessed at least once per (1-ExpirySlack)*Timeout,
// a session never times out; idle for longer than Timeout, it is gone
// (icza/session's definition), and nothing is written for it.
func TestExpiryContract(t *testing.T) {
	const timeout = 10 * time.Minute
	for _, tc := range expiryModes {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			clock := e.fakeClock()
			id := e.newSession(tc.opts, timeout)
			slack := newConfig(tc.opts).slack
			get := func() session.Session {
				if tc.evict {
					e.srv.FlushMemcache()
				}
				var sess session.Session
				e.request(tc.opts, func(st session.Store) { sess = st.Get(id) })
				require.NoError(t, WaitForAsyncSaves(context.Background()))
				return sess
			}
			// Irregular gaps, each at most (1-slack)*Timeout less a
			// minute. The minute keeps the test off the exact deadline,
			// where Memcache's expiry, judged by aelocal's clock, would
			// depend on how much real time passed (TestIdleDeadlineIsExact
			// checks the deadline itself).
			limit := scaleDuration(timeout, 1-slack) - time.Minute
			gaps := []time.Duration{limit, time.Second, timeout / 20, limit, limit / 3, limit}
			for round := 0; round < 3; round++ {
				for i, gap := range gaps {
					clock.Advance(gap)
					require.NotNil(t, get(), "round %d, gap %d (%v)", round, i, gap)
				}
			}
			clock.Advance(timeout + time.Second)
			e.rpcs()
			assert.Nil(t, get(), "idle past its Timeout")
			stats := e.rpcs()
			assert.Zero(t, stats["memcache.Set"]+stats["datastore_v3.Put"], "a timed-out session is not written: %v", stats)
			if !newConfig(tc.opts).onlyMemcache {
				e.srv.FlushMemcache()
				assert.Nil(t, get(), "and gone from the datastore's point of view")
			}
		})
	}
}

// The case: a session idle for 10.5 s with a 10 s Timeout is gone,
// in every mode, whether Memcache or the Datastore still holds a copy.
func TestIdleSessionTimesOut(t *testing.T) {
	for _, tc := range expiryModes {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			clock := e.fakeClock()
			id := e.newSession(tc.opts, 10*time.Second)
			clock.Advance(10*time.Second + 500*time.Millisecond)
			if tc.evict {
				e.srv.FlushMemcache()
			}
			e.rpcs()
			e.request(tc.opts, func(st session.Store) { assert.Nil(t, st.Get(id)) })
			require.NoError(t, WaitForAsyncSaves(context.Background()))
			stats := e.rpcs()
			assert.Zero(t, stats["memcache.Set"]+stats["datastore_v3.Put"], "nothing extends it: %v", stats)
		})
	}
}

// The deadline is the last recorded access plus Timeout: to the second in
// Memcache (rounded down, never late) and to the microsecond in the
// Datastore.
func TestIdleDeadlineIsExact(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	const timeout = time.Hour
	id := e.newSession(nil, timeout)
	start := clock.Now()
	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
	assert.True(t, ent.Expires.Equal(start.Add(timeout).Truncate(time.Microsecond)), "exp %v, want %v", ent.Expires, start.Add(timeout))
	item, err := memcache.Get(e.ctx(), id)
	require.NoError(t, err)
	assert.Equal(t, uint32(start.Add(timeout).Unix()), item.Flags)

	e.srv.FlushMemcache() // the Datastore's deadline is the exact one
	clock.Advance(timeout - time.Microsecond)
	e.request(nil, func(st session.Store) {
		assert.NotNil(t, st.Get(id), "idle for Timeout less a microsecond: still there")
	})

	id = e.newSession(nil, timeout)
	e.srv.FlushMemcache()
	clock.Advance(timeout + time.Microsecond)
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(id), "idle for longer") })
}

// icza/session times a session out once now-Accessed() > Timeout(): a
// zero or negative Timeout means at once. Such a session is not stored (an
// app can still use it in the request that made it), and the log and
// SaveError say so. (NewSessionOptions turns a zero Timeout into 30
// minutes, and gob leaves a zero field out, so a zero Timeout comes from
// JSON or from another Session implementation.)
func TestZeroAndNegativeTimeouts(t *testing.T) {
	zero := session.NewSession()
	require.NoError(t, memcache.JSON.Unmarshal([]byte(`{"IDF":"`+session.NewSession().ID()+`","TimeoutF":0}`), zero))
	require.Zero(t, zero.Timeout())
	negative := session.NewSessionOptions(&session.SessOptions{Timeout: -time.Minute})
	require.Negative(t, negative.Timeout())

	for _, sess := range []session.Session{zero, negative} {
		t.Run(sess.Timeout().String(), func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			e.rpcs()
			e.request(nil, func(st session.Store) {
				st.Add(sess)
				assert.Same(t, sess, st.Get(sess.ID()), "usable in its own request")
				assert.Error(t, SaveError(st))
			})
			assert.Empty(t, e.rpcs(), "nothing stored")
			assert.Len(t, e.logged("WARNING", LogID(sess.ID()), "not stored", "time out at once"), 1, "%v", e.allLogs())
			assert.Empty(t, e.logged("session added"))

			// A copy stored elsewhere (by the original package, say) with
			// such a timeout is no session either.
			b, err := memcache.JSON.Marshal(sess)
			require.NoError(t, err)
			require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: sess.ID(), Value: b, Expiration: time.Hour}))
			o := &MemcacheStoreOptions{Codec: &memcache.JSON}
			e.request(o, func(st session.Store) { assert.Nil(t, st.Get(sess.ID())) })
			// Also with a deadline recorded far ahead, in either tier.
			require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: sess.ID(), Value: b, Flags: expiryFlags(time.Now().Add(time.Hour))}))
			_, err = datastore.Put(e.ctx(), datastore.NewKey(e.ctx(), "sess_", sess.ID(), 0, nil), &SessEntity{Expires: time.Now().Add(time.Hour), Value: b})
			require.NoError(t, err)
			e.request(o, func(st session.Store) { assert.Nil(t, st.Get(sess.ID())) })
			e.srv.FlushMemcache()
			e.request(o, func(st session.Store) { assert.Nil(t, st.Get(sess.ID())) })
		})
	}
}

// Timeouts of 80 years, 265 years and math.MaxInt64 overflowed the old
// arithmetic or clamped the deadline in the Memcache flags to 2106: the
// session was never stored (while the log said "session added"), or every
// read-only request looked due for a refresh. Now such a session is stored
// in both tiers, and reading it costs one Memcache get.
func TestHugeTimeouts(t *testing.T) {
	for _, timeout := range []time.Duration{80 * 365 * 24 * time.Hour, 265 * 365 * 24 * time.Hour, math.MaxInt64} {
		t.Run(timeout.String(), func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			clock := e.fakeClock()
			lo := e.srv.Now()
			id := e.newSession(nil, timeout)
			hi := e.srv.Now()
			assert.Len(t, e.logged("INFO", LogID(id), "session added"), 1)
			assert.Empty(t, e.logged("ERROR"))
			assert.Empty(t, e.logged("WARNING"))

			item, err := memcache.Peek(e.ctx(), id)
			require.NoError(t, err)
			require.NotNil(t, item.Timestamps.Expiration)
			month := 30 * 24 * time.Hour
			assert.True(t, between(*item.Timestamps.Expiration, lo.Add(month), hi.Add(month)),
				"memcache keeps it 30 days: %v", *item.Timestamps.Expiration)
			var ent SessEntity
			require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
			assert.True(t, ent.Expires.After(clock.Now().Add(79*365*24*time.Hour)), "exp %v", ent.Expires)

			e.rpcs()
			for i := 0; i < 3; i++ {
				clock.Advance(24 * time.Hour)
				e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
			}
			assert.Equal(t, map[string]int64{"memcache.Get": 3}, e.rpcs(), "no refresh")
		})
	}
}

// Get after Close still returns the session, as the original did, but its
// changes are never saved: that is logged.
func TestGetAfterCloseIsLogged(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)
	st := NewMemcacheStore(e.ctx())
	require.NotNil(t, st.Get(id))
	st.Close()
	assert.Empty(t, e.logged("WARNING"))
	sess := st.Get(id)
	require.NotNil(t, sess)
	sess.SetAttr("n", 2)
	st.Close()
	assert.Len(t, e.logged("WARNING", LogID(id), "Get after Close", "not saved"), 1, "%v", e.allLogs())
	e.request(nil, func(st session.Store) { assert.Equal(t, 1, st.Get(id).Attr("n")) })
}

// Defect 5: memcache servers disagree on expirations over 30 days, so the
// store never asks for more; the datastore carries longer sessions.
func TestTimeoutOverThirtyDays(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	lo := e.srv.Now()
	id := e.newSession(nil, 90*24*time.Hour)
	hi := e.srv.Now()

	item, err := memcache.Peek(e.ctx(), id)
	require.NoError(t, err)
	require.NotNil(t, item.Timestamps.Expiration)
	month := 30 * 24 * time.Hour
	assert.True(t, between(*item.Timestamps.Expiration, lo.Add(month), hi.Add(month)),
		"memcache expiry is capped at 30 days: %v", *item.Timestamps.Expiration)

	clock.Advance(31 * 24 * time.Hour) // memcache has dropped it
	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
	// The first Get left a placeholder in Memcache; the next one reads
	// the Datastore again and puts the copy back (tombstone.go).
	for _, origin := range []Origin{OriginDatastore, OriginMemcache} {
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, origin, SessionOrigin(st, id), "put back into memcache")
		})
	}
}

// A session added in a request is written once, even without slack, unless
// it changes after Add.
func TestAddedSessionIsWrittenOnce(t *testing.T) {
	for _, slack := range []float64{0, -1} {
		e := newTestEnv(t)
		o := &MemcacheStoreOptions{ExpirySlack: slack}
		e.rpcs()
		e.newSession(o, 10*time.Second)
		assert.Equal(t, map[string]int64{"memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs(), "slack %v", slack)

		e.request(o, func(st session.Store) {
			sess := session.NewSession()
			st.Add(sess)
			sess.SetAttr("later", true)
		})
		assert.Equal(t, map[string]int64{"memcache.Set": 2, "datastore_v3.Put": 2}, e.rpcs(), "a change after Add is saved on Close")
	}
}
