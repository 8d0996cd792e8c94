package cloud

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"testing"
	"time"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/cloud/internal/rediscount"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// The latency model of BenchmarkCacheRequest: a round trip to
// Memorystore for Redis in the app's region, and one to App Engine's
// bundled Memcache (the figure of the root package's benchmarks). They
// are assumptions, not measurements. The Redis figure is added by a TCP
// proxy in front of a real redis-server (redistest.Proxy) to every chunk
// the client sends, which is one command or one pipeline; aelocal adds
// Memcache's to every call, server-side.
const (
	benchRedisLatency    = 300 * time.Microsecond
	benchMemcacheLatency = time.Millisecond
)

// benchWorkloads are what one request does with its store, as in the root
// package's BenchmarkRequest: read a session, change it, start one, end
// one. perRequest workloads use up a session per request.
var benchWorkloads = []struct {
	name       string
	perRequest bool
	do         func(st session.Store, i int, ids []string)
}{
	{"read", false, func(st session.Store, i int, ids []string) {
		if st.Get(ids[i%len(ids)]) == nil {
			panic("session not found")
		}
	}},
	{"modify", false, func(st session.Store, i int, ids []string) {
		st.Get(ids[i%len(ids)]).SetAttr("n", i)
	}},
	{"new", false, func(st session.Store, i int, _ []string) {
		st.Add(session.NewSessionOptions(&session.SessOptions{Attrs: map[string]any{"n": i}, Timeout: time.Hour}))
	}},
	{"logout", true, func(st session.Store, i int, ids []string) {
		st.Remove(st.Get(ids[i]))
	}},
}

// BenchmarkCacheRequest measures one request's use of the store over the
// Redis tier (a real redis-server) and over App Engine's Memcache
// (aelocal), with the latency model above: the same session core, the
// same requests, only the cache differs. Each request is a fresh store,
// the workload, and Close. Besides ns/op it reports the cache calls per
// request: Redis commands and round trips (rediscount), Memcache RPCs
// (aelocal's counts).
func BenchmarkCacheRequest(b *testing.B) {
	for _, cache := range []string{"redis", "memcache"} {
		for _, w := range benchWorkloads {
			b.Run(fmt.Sprintf("cache=%s/workload=%s", cache, w.name), func(b *testing.B) {
				srv := aelocal.RunT(b)
				ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
				var c tier.Cache = tier.Memcache{}
				var proxy *redistest.Proxy
				if cache == "redis" {
					proxy = redistest.NewProxy(b, redistest.Start(b))
					c = newRedisCache(countingClient(b, proxy.Addr))
				}
				prevOut := stdlog.Writer()
				stdlog.SetOutput(io.Discard)
				b.Cleanup(func() { stdlog.SetOutput(prevOut) })
				newStore := func(ctx context.Context) session.Store {
					return tier.NewStore(ctx, c, nil, (*gaesession.MemcacheStoreOptions)(nil))
				}

				n := 100
				if w.perRequest {
					n = b.N
				}
				ids := make([]string, n)
				for i := range ids {
					st := newStore(ctx)
					s := session.NewSessionOptions(&session.SessOptions{Attrs: map[string]any{"n": -1}, Timeout: time.Hour})
					st.Add(s)
					st.Close()
					ids[i] = s.ID()
				}
				if proxy != nil {
					proxy.SetDelay(benchRedisLatency)
				} else {
					srv.SetLatency("memcache", benchMemcacheLatency)
				}
				srv.ResetStats()
				ctx, cmds := rediscount.WithCounter(ctx)

				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					st := newStore(ctx)
					w.do(st, i, ids)
					st.Close()
				}
				b.StopTimer()
				nf := float64(b.N)
				b.ReportMetric(float64(sum(cmds.Commands()))/nf, "redis-cmd/op")
				b.ReportMetric(float64(cmds.RoundTrips())/nf, "redis-trips/op")
				var mc int64
				for k, v := range srv.Stats() {
					if len(k) > 9 && k[:9] == "memcache." {
						mc += v
					}
				}
				b.ReportMetric(float64(mc)/nf, "memcache-rpc/op")
			})
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
