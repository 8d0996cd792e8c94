package cloud

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	"google.golang.org/grpc"
)

// The move off the bundled services, step by step (README, "Moving off the
// bundled services"), each a rolling deploy in which old and new versions
// serve the same users: (a) old versions run the bundled store, new ones
// the Cloud store on Cloud Datastore and the bundled Memcache; (b) old
// versions run (a)'s Cloud store, new ones the Cloud store on the
// transition cache (Redis and Memcache); (c) old versions run (b)'s, new
// ones the Cloud store on Redis alone. Every test runs two store
// configurations, an old and a new version, against one aelocal and one
// redis-server.

// storeConfig is a store kind with its options.
type storeConfig struct {
	kind storeKind
	opts *gaesession.MemcacheStoreOptions
}

func (c storeConfig) String() string {
	switch {
	case c.opts == nil:
		return c.kind.name
	case c.opts.AsyncDatastoreSave:
		return c.kind.name + "/async"
	case c.opts.MergeConcurrentUpdates:
		return c.kind.name + "/merge"
	}
	return c.kind.name + "/options"
}

var (
	asyncOpts = &gaesession.MemcacheStoreOptions{AsyncDatastoreSave: true}
	mergeOpts = &gaesession.MemcacheStoreOptions{MergeConcurrentUpdates: true}
)

// migrationSteps are the steps of the move, each with pairs of an old and
// a new version's store configuration.
var migrationSteps = []struct {
	name  string
	redis bool
	pairs [][2]storeConfig
}{
	{"a", false, [][2]storeConfig{
		{{bundled, nil}, {cloudMemcache, nil}},
		{{bundled, asyncOpts}, {cloudMemcache, asyncOpts}},
		{{bundled, mergeOpts}, {cloudMemcache, mergeOpts}},
		{{bundled, nil}, {cloudMemcache, asyncOpts}},
	}},
	{"b", true, [][2]storeConfig{
		{{cloudMemcache, nil}, {cloudTransition, nil}},
		{{cloudMemcache, asyncOpts}, {cloudTransition, asyncOpts}},
		{{cloudMemcache, mergeOpts}, {cloudTransition, mergeOpts}},
		{{bundled, nil}, {cloudTransition, nil}},
	}},
	{"c", true, [][2]storeConfig{
		{{cloudTransition, nil}, {cloudRedis, nil}},
		{{cloudTransition, asyncOpts}, {cloudRedis, asyncOpts}},
		{{cloudTransition, mergeOpts}, {cloudRedis, mergeOpts}},
	}},
}

// migrationEnv is a new env for a step.
func migrationEnv(t *testing.T, withRedis bool) *env {
	e := newEnv(t)
	if withRedis {
		e.withRedis()
	}
	return e
}

// One user served by the two versions of a step in turn: each change is
// read by the other at once (no stale read), changes to different
// attributes by each survive (no lost update), and a logout by either is
// final for both (no resurrection), with the caches kept or emptied
// between requests.
func TestMigrationAlternating(t *testing.T) {
	for _, step := range migrationSteps {
		for _, pair := range step.pairs {
			for _, evict := range []bool{false, true} {
				name := fmt.Sprintf("step %s/%v and %v", step.name, pair[0], pair[1])
				if evict {
					name += "/evict between requests"
				}
				t.Run(name, func(t *testing.T) {
					e := migrationEnv(t, step.redis)
					logs := captureLogs(t)
					testAlternating(t, e, pair, evict)
					assert.Empty(t, logs.with("ERROR"))
				})
			}
		}
	}
}

// testAlternating runs the alternating requests of two store
// configurations against e.
func testAlternating(t *testing.T, e *env, pair [2]storeConfig, evict bool) {
	for logoutBy := 0; logoutBy < 2; logoutBy++ {
		id := e.newSession(pair[0].kind, pair[0].opts, time.Hour)
		request := func(c storeConfig, f func(sess session.Session, st session.Store)) {
			t.Helper()
			if evict {
				e.evict()
			}
			e.request(c.kind, c.opts, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess, "%v finds the session", c)
				f(sess, st)
			})
		}
		for i := 1; i <= 6; i++ {
			writer, reader := pair[i%2], pair[(i+1)%2]
			request(writer, func(sess session.Session, _ session.Store) {
				sess.SetAttr("n", i)
				sess.SetAttr(writer.String(), i)
			})
			request(reader, func(sess session.Session, _ session.Store) {
				assert.Equal(t, i, sess.Attr("n"), "%v reads what %v wrote", reader, writer)
				assert.Equal(t, i, sess.Attr(writer.String()))
				if i > 1 {
					assert.Equal(t, i-1, sess.Attr(reader.String()), "its own change stays")
				}
			})
		}
		request(pair[logoutBy], func(sess session.Session, st session.Store) { st.Remove(sess) })
		for round := 0; round < 3; round++ {
			if round == 2 {
				e.evict()
			}
			for _, c := range pair {
				sess, _ := e.get(c.kind, c.opts, id)
				assert.Nil(t, sess, "round %d: %v finds the session after %v logged it out", round, c, pair[logoutBy])
			}
		}
		assert.Nil(t, e.entity(id))
	}
}

// A request of one version that loaded the session before the other
// version logged it out cannot bring it back, wherever the logout falls
// among its calls (Memcache, Redis, Cloud Datastore), and whatever the
// caches evict.
func TestMigrationLogoutByTheOtherVersion(t *testing.T) {
	for _, step := range migrationSteps {
		for _, pair := range step.pairs {
			for _, order := range [][2]storeConfig{pair, {pair[1], pair[0]}} {
				b, remover := order[0], order[1]
				t.Run(fmt.Sprintf("step %s/%v works, %v logs out", step.name, b, remover), func(t *testing.T) {
					e := migrationEnv(t, step.redis)
					testLogoutOvertakes(t, e, b, remover)
				})
			}
		}
	}
}

// testLogoutOvertakes runs request B, of configuration b, which loads the
// session and changes it, with a logout by remover before each of B's
// calls in turn (Memcache emptied after it, or before each call), and
// checks that the session stays gone for both.
func testLogoutOvertakes(t *testing.T, e *env, b, remover storeConfig) {
	var before atomic.Pointer[func()]
	hook := func() {
		if f := before.Load(); f != nil {
			(*f)()
		}
	}
	clientB := e.newClient(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		hook()
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	var rdbB *redis.Client
	if e.rdb != nil {
		rdbB = newClient(t, e.rdb.Options().Addr)
		rdbB.AddHook(beforeHook{hook})
	}
	newB := func() session.Store {
		ctx := context.Background()
		if b.kind.aeCtx {
			ctx = appengine.WithAPICallFunc(e.aeCtx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
				hook()
				return appengine.APICall(ctx, service, method, in, out)
			})
		}
		bEnv := *e
		bEnv.client, bEnv.rdb = clientB, rdbB
		return b.kind.new(&bEnv, ctx, b.opts)
	}
	for _, evictAll := range []bool{false, true} {
		for point := 0; ; point++ {
			after := false
			t.Run(fmt.Sprintf("evict all %t/before call %d", evictAll, point), func(t *testing.T) {
				id := e.newSession(remover.kind, remover.opts, time.Hour)
				var calls atomic.Int64
				var ran atomic.Bool
				logoutNow := func() {
					ran.Store(true)
					// Not e.request, which waits for asynchronous
					// saves: B's may be the one running this.
					st := remover.kind.new(e, e.ctxFor(remover.kind), remover.opts)
					if sess := st.Get(id); assert.NotNil(t, sess, "the logout finds the session") {
						st.Remove(sess)
					}
					st.Close()
					e.evict()
				}
				f := func() {
					if calls.Add(1)-1 == int64(point) {
						logoutNow()
					}
					if evictAll {
						e.evict()
					}
				}
				before.Store(&f)
				st := newB()
				if sess := st.Get(id); sess != nil {
					sess.SetAttr("n", 2)
				}
				st.Close()
				require.NoError(t, gaesession.WaitForAsyncSaves(context.Background()))
				before.Store(nil)
				if !ran.Load() {
					after = true
					logoutNow()
				}
				for round := 0; round < 3; round++ {
					if round == 2 {
						e.evict()
					}
					for _, c := range []storeConfig{b, remover} {
						sess, _ := e.get(c.kind, c.opts, id)
						assert.Nil(t, sess, "round %d: %v finds the session after the logout", round, c)
					}
				}
				assert.Nil(t, e.entity(id), "the datastore entity is gone")
			})
			if after || point == 80 {
				break
			}
		}
	}
}

// beforeHook runs f before each command or pipeline a Redis client sends.
type beforeHook struct{ f func() }

func (h beforeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h beforeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.f()
		return next(ctx, cmd)
	}
}

func (h beforeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.f()
		return next(ctx, cmds)
	}
}
