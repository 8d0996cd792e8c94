package gaesession

import (
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestExpiryRefreshIsDueOnceLessThanTimeoutRemains(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, time.Hour) // stored copy lives 66 minutes
	e.rpcs()

	clock.Advance(5 * time.Minute) // 61 minutes left: no write
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())

	clock.Advance(2 * time.Minute) // 59 minutes left: refresh
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs())

	clock.Advance(2 * time.Minute) // refreshed 2 minutes ago: no write
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
}

// The expiry contract: accessed at least once per Timeout, a session never
// expires; idle for longer than Timeout*(1+slack), it is gone.
func TestExpiryContract(t *testing.T) {
	const timeout = 10 * time.Minute
	for _, tc := range []struct {
		name  string
		opts  *MemcacheStoreOptions
		evict bool // empty memcache before every request
	}{
		{"memcache and datastore", nil, false},
		{"datastore only", nil, true},
		{"only memcache", &MemcacheStoreOptions{OnlyMemcache: true}, false},
		{"always write", &MemcacheStoreOptions{ExpirySlack: -1}, false},
		{"slack 0.5", &MemcacheStoreOptions{ExpirySlack: 0.5}, false},
	} {
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
				return sess
			}
			// Irregular gaps, each at most one timeout. Without slack, a
			// gap of exactly one timeout meets the expiry itself, which
			// Memcache counts as expired.
			full := timeout
			if slack == 0 {
				full -= time.Second
			}
			gaps := []time.Duration{full, time.Second, timeout / 20, full, timeout - time.Second, timeout / 3, full}
			for round := 0; round < 3; round++ {
				for i, gap := range gaps {
					clock.Advance(gap)
					require.NotNil(t, get(), "round %d, gap %d (%v)", round, i, gap)
				}
			}
			clock.Advance(time.Duration(float64(timeout)*(1+slack)) + time.Second)
			assert.Nil(t, get(), "idle past Timeout*(1+%v)", slack)
			if tc.opts == nil || !tc.opts.OnlyMemcache {
				e.srv.FlushMemcache()
				assert.Nil(t, get(), "and gone from the datastore's point of view")
			}
		})
	}
}

// Defect 5: memcache servers disagree on expirations over 30 days, so the
// store never asks for more; the datastore carries longer sessions.
func TestTimeoutOverThirtyDays(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, 90*24*time.Hour)

	item, err := memcache.Peek(e.ctx(), id)
	require.NoError(t, err)
	require.NotNil(t, item.Timestamps.Expiration)
	assert.WithinDuration(t, clock.Now().Add(30*24*time.Hour), *item.Timestamps.Expiration, 2*time.Second,
		"memcache expiry is capped at 30 days")

	clock.Advance(31 * 24 * time.Hour) // memcache has dropped it
	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
	e.request(nil, func(st session.Store) {
		require.NotNil(t, st.Get(id))
		assert.Equal(t, OriginMemcache, SessionOrigin(st, id), "put back into memcache")
	})
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
