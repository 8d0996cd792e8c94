package cloud

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
	"github.com/redis/go-redis/v9"
	"google.golang.org/api/option"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// env is one aelocal serving both the bundled services (to the appengine/v2
// client) and the Cloud Datastore API (to the Cloud client) over one
// datastore, as production serves one Firestore in Datastore mode database
// to both.
type env struct {
	t      testing.TB
	srv    *aelocal.Server
	client *datastore.Client
	rdb    *redis.Client // a real redis-server's, once withRedis started it
}

// withRedis starts a redis-server for the Redis caches of e's stores.
func (e *env) withRedis() *env {
	e.rdb = newClient(e.t, redistest.Start(e.t))
	return e
}

// evict empties every cache: Memcache, and Redis if there is one.
func (e *env) evict() {
	e.srv.FlushMemcache()
	if e.rdb != nil {
		if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
			e.t.Error(err)
		}
	}
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := aelocal.RunTOptions(t, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	e := &env{t: t, srv: srv}
	e.client = e.newClient()
	t.Cleanup(func() { gaesession.WaitForAsyncSaves(context.Background()) })
	return e
}

// newClient returns a Cloud Datastore client of the server's project;
// interceptors see its every call.
func (e *env) newClient(interceptors ...grpc.UnaryClientInterceptor) *datastore.Client {
	e.t.Helper()
	opts := []option.ClientOption{
		option.WithEndpoint("passthrough:///" + e.srv.CloudDatastoreAddr()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
	for _, ic := range interceptors {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(ic)))
	}
	c, err := datastore.NewClient(context.Background(), e.srv.CloudProjectID(), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// aeCtx returns an App Engine context whose bundled-service calls the
// server answers.
func (e *env) aeCtx() context.Context {
	return appengine.NewContext(e.srv.NewRequest("GET", "/", nil))
}

// rpcs returns the RPC counts since the last call and resets them.
func (e *env) rpcs() map[string]int64 {
	s := e.srv.Stats()
	e.srv.ResetStats()
	return s
}

// storeKind is one way to build a request's store: the bundled one, or the
// Cloud one over one of its caches.
type storeKind struct {
	name string
	new  func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store
	// aeCtx: the store needs an App Engine context (it uses Memcache).
	aeCtx bool
}

var (
	bundled = storeKind{"bundled", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return gaesession.NewMemcacheStoreOptions(ctx, o)
	}, true}
	cloudMemcache = storeKind{"cloud+memcache", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return NewStore(ctx, e.client, Memcache(), optionsOf(o))
	}, true}
	cloudNoCache = storeKind{"cloud", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return NewStore(ctx, e.client, Cache{}, optionsOf(o))
	}, false}
	// The caches of steps (b) and (c) (withRedis).
	cloudTransition = storeKind{"cloud+transition", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return NewStore(ctx, e.client, Transition(e.rdb), optionsOf(o))
	}, true}
	cloudRedis = storeKind{"cloud+redis", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return NewStore(ctx, e.client, Redis(e.rdb), optionsOf(o))
	}, false}
)

func optionsOf(o *gaesession.MemcacheStoreOptions) *Options {
	if o == nil {
		return nil
	}
	return &Options{MemcacheStoreOptions: *o}
}

// ctxFor returns a context for a request of k.
func (e *env) ctxFor(k storeKind) context.Context {
	if k.aeCtx {
		return e.aeCtx()
	}
	return context.Background()
}

// request runs f with a store of kind k of its own and closes the store,
// as one HTTP request of an app would, and waits for its asynchronous
// saves.
func (e *env) request(k storeKind, o *gaesession.MemcacheStoreOptions, f func(st session.Store)) {
	e.t.Helper()
	st := k.new(e, e.ctxFor(k), o)
	f(st)
	st.Close()
	if err := gaesession.WaitForAsyncSaves(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// newSession adds a new session with attribute "n" = 1 through a store of
// kind k and returns its ID.
func (e *env) newSession(k storeKind, o *gaesession.MemcacheStoreOptions, timeout time.Duration) string {
	var id string
	e.request(k, o, func(st session.Store) {
		sess := session.NewSessionOptions(&session.SessOptions{
			CAttrs:  map[string]interface{}{"user": "gopher"},
			Attrs:   map[string]interface{}{"n": 1},
			Timeout: timeout,
		})
		st.Add(sess)
		id = sess.ID()
	})
	return id
}

// get reads the session id through a store of kind k in a request of its
// own.
func (e *env) get(k storeKind, o *gaesession.MemcacheStoreOptions, id string) (sess session.Session, origin gaesession.Origin) {
	e.request(k, o, func(st session.Store) {
		sess = st.Get(id)
		origin = gaesession.SessionOrigin(st, id)
	})
	return sess, origin
}

// entity reads the session entity of id with the Cloud client; nil if
// there is none.
func (e *env) entity(id string) *tier.Entity {
	e.t.Helper()
	var ent tier.Entity
	err := e.client.Get(context.Background(), datastore.NameKey("sess_", id, nil), &ent)
	if err == datastore.ErrNoSuchEntity {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &ent
}

// logCapture records the store's log lines (both stores': they are one
// core).
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

// captureLogs records the store's log lines for the rest of the test,
// which must not run in parallel: the hook is process-wide.
func captureLogs(t testing.TB) *logCapture {
	l := &logCapture{}
	hook := func(level int, msg string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, [...]string{"DEBUG", "INFO", "WARNING", "ERROR"}[level]+" "+msg)
	}
	prev := tier.SwapLogHook(&hook)
	t.Cleanup(func() { tier.SwapLogHook(prev) })
	return l
}

// with returns the captured lines that contain every one of words.
func (l *logCapture) with(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range l.lines {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// decodeGob decodes a stored session as the original package does.
func decodeGob(b []byte) (session.Session, error) {
	sess := session.NewSession()
	err := memcache.Gob.Unmarshal(b, sess)
	return sess, err
}
