package cloud

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/cloud/internal/rediscount"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
	"github.com/redis/go-redis/v9"
	"google.golang.org/appengine/v2"
)

// countingClient is a client of addr whose commands a rediscount.Counter
// in a call's context counts.
func countingClient(t testing.TB, addr string) *redis.Client {
	c := newClient(t, addr)
	c.AddHook(rediscount.Hook{})
	return c
}

// TestStoreOnRedisCommands: the session core over the Redis tier, request
// by request, with the Redis commands each one sends, exactly: one read
// per read-only request, writes only on change, a logout's tombstone; the
// same calls the bundled store makes to Memcache (gaesession_test.go's
// tables) once the pool is connected and the server has the script, with
// no durable tier (OnlyMemcache) since the Cloud Datastore
// tier is not this test's. Against a real redis-server and miniredis.
func TestStoreOnRedisCommands(t *testing.T) {
	for name, addr := range map[string]func(t *testing.T) string{
		"redis-server": func(t *testing.T) string { return redistest.Start(t) },
		"miniredis":    func(t *testing.T) string { return miniredis.RunT(t).Addr() },
	} {
		t.Run(name, func(t *testing.T) {
			rdb := countingClient(t, addr(t))
			cache := newRedisCache(rdb)
			request := func(want string, f func(st session.Store)) {
				t.Helper()
				ctx, cmds := rediscount.WithCounter(context.Background())
				st := tier.NewStore(ctx, cache, nil, (*gaesession.MemcacheStoreOptions)(nil))
				f(st)
				st.Close()
				if got := cmds.String(); got != want {
					t.Errorf("Redis commands: %s, want %s", got, want)
				}
			}
			// The first calls open the pool's connections (HELLO, CLIENT
			// SETINFO) and load the script (EVALSHA answers NOSCRIPT, then
			// EVAL): once per connection and server, not per request.
			for range 2 {
				warm := tier.NewStore(context.Background(), cache, nil, (*gaesession.MemcacheStoreOptions)(nil))
				s := session.NewSession()
				warm.Add(s)
				warm.Close()
				warm = tier.NewStore(context.Background(), cache, nil, (*gaesession.MemcacheStoreOptions)(nil))
				warm.Get(s.ID())
				warm.Close()
			}
			var id string
			request("1 Redis command: EVALSHA", func(st session.Store) {
				s := session.NewSessionOptions(&session.SessOptions{Attrs: map[string]any{"n": 1}, Timeout: time.Hour})
				st.Add(s)
				id = s.ID()
			})
			request("1 Redis command: HMGET", func(st session.Store) {
				if s := st.Get(id); s == nil || s.Attr("n") != 1 {
					t.Fatalf("read: %v", s)
				}
			})
			request("2 Redis commands in 2 round trips: HMGET, EVALSHA", func(st session.Store) {
				st.Get(id).SetAttr("n", 2)
			})
			request("1 Redis command: HMGET", func(st session.Store) {
				if s := st.Get(id); s == nil || s.Attr("n") != 2 {
					t.Fatalf("read after the change: %v", s)
				}
			})
			request("2 Redis commands in 2 round trips: HMGET, EVALSHA", func(st session.Store) {
				st.Remove(st.Get(id))
			})
			request("1 Redis command: HMGET", func(st session.Store) {
				if s := st.Get(id); s != nil {
					t.Fatalf("read after the logout: %v", s.ID())
				}
			})
			v, err := rdb.HGet(context.Background(), id, "v").Bytes()
			if err != nil || !bytes.Equal(v, tombstoneValue) {
				t.Fatalf("after the logout Redis holds %q, %v; want the tombstone", v, err)
			}
			// The tombstone lasts as Memcache's does: the session's timeout
			// and a minute at most.
			if ttl := rdb.PTTL(context.Background(), id).Val(); ttl <= 0 || ttl > time.Hour+time.Minute+time.Second {
				t.Fatalf("the tombstone's TTL is %v", ttl)
			}
		})
	}
}

// TestTransitionMarkersAreTheCores: the tombstone and the placeholder the
// transition tier recognises are the bytes the bundled store writes to
// Memcache.
func TestTransitionMarkersAreTheCores(t *testing.T) {
	srv := aelocal.RunT(t)
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	mustItem := func(id string, want []byte) {
		t.Helper()
		it, ok := srv.MemcacheItem("", id)
		if !ok || !bytes.Equal(it.Value, want) {
			t.Fatalf("Memcache holds %+v (found %v), want %q", it, ok, want)
		}
	}
	st := gaesession.NewMemcacheStore(ctx)
	s := session.NewSessionOptions(&session.SessOptions{Timeout: time.Hour})
	st.Add(s)
	st.Close()
	// Memcache loses the session: the next read loads the Datastore and
	// leaves the placeholder.
	srv.FlushMemcache()
	st = gaesession.NewMemcacheStore(ctx)
	if st.Get(s.ID()) == nil {
		t.Fatal("session lost")
	}
	st.Close()
	mustItem(s.ID(), seeDatastoreValue)
	st = gaesession.NewMemcacheStore(ctx)
	st.Remove(st.Get(s.ID()))
	st.Close()
	mustItem(s.ID(), tombstoneValue)
}

// TestLogoutOnRedisBounded: a logout's tombstone in Redis lives as long as
// Memcache's would: the session's timeout and a minute, capped at
// Memcache's 30 days, so that Redis holds no marker for ever; and while it
// lives, no write brings the session back.
func TestLogoutOnRedisBounded(t *testing.T) {
	rdb := newClient(t, redistest.Start(t))
	cache := newRedisCache(rdb)
	ctx := context.Background()
	request := func(f func(st session.Store)) {
		st := tier.NewStore(ctx, cache, nil, (*gaesession.MemcacheStoreOptions)(nil))
		f(st)
		st.Close()
	}
	for _, c := range []struct {
		timeout, maxTTL time.Duration
	}{
		{time.Hour, time.Hour + time.Minute + time.Second},
		{90 * 24 * time.Hour, maxCacheTTL},
	} {
		s := session.NewSessionOptions(&session.SessOptions{Timeout: c.timeout})
		request(func(st session.Store) { st.Add(s) })
		// A request loads the session, another logs out, then the first
		// writes its change: refused, the tombstone stays.
		late := tier.NewStore(ctx, cache, nil, (*gaesession.MemcacheStoreOptions)(nil))
		late.Get(s.ID()).SetAttr("x", 1)
		request(func(st session.Store) { st.Remove(st.Get(s.ID())) })
		late.Close()
		request(func(st session.Store) {
			if st.Get(s.ID()) != nil {
				t.Fatalf("timeout %v: the session came back after the logout", c.timeout)
			}
		})
		v, _ := rdb.HGet(ctx, s.ID(), "v").Bytes()
		ttl := rdb.PTTL(ctx, s.ID()).Val()
		if !bytes.Equal(v, tombstoneValue) || ttl <= 0 || ttl > c.maxTTL {
			t.Fatalf("timeout %v: Redis holds %q with TTL %v, want the tombstone for at most %v", c.timeout, v, ttl, c.maxTTL)
		}
	}
}
