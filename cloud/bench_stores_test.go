package cloud

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// BenchmarkStores measures one request on the bundled store and on the
// Cloud store (with the bundled Memcache, step a of the move, and with no
// cache) side by side, with the workloads of BenchmarkCacheRequest: the
// RPCs of each service per request (aelocal's counts), allocations, and
// the time under issue 23's latency model (latency=model: Memcache 1 ms,
// Datastore lookups 5 ms, commits, puts and deletes 20 ms, for both
// Datastore APIs) or with none (latency=none, where ns/op is CPU and
// loopback). Bundled calls are served in-process
// (appengine.WithAPICallFunc); Cloud Datastore calls go over gRPC on
// loopback, so allocs/op include the gRPC client's and server's work
// (aelocal runs in the process). The stores' log lines (one per Add and
// Remove) go to standard error, as appengine/v2/log writes them outside
// App Engine: run it with 2>/dev/null.
func BenchmarkStores(b *testing.B) {
	stores := []struct {
		name string
		new  func(e *env, ctx context.Context) session.Store
	}{
		{"bundled", func(e *env, ctx context.Context) session.Store { return gaesession.NewMemcacheStore(ctx) }},
		{"cloud+memcache", func(e *env, ctx context.Context) session.Store { return NewStore(ctx, e.client, Memcache(), nil) }},
		{"cloud", func(e *env, ctx context.Context) session.Store { return NewStore(ctx, e.client, Cache{}, nil) }},
	}
	latency := map[string]time.Duration{
		"memcache":                    time.Millisecond,
		"datastore_v3.Get":            5 * time.Millisecond,
		"datastore_v3.Put":            20 * time.Millisecond,
		"datastore_v3.Delete":         20 * time.Millisecond,
		"cloud_datastore_v1.Lookup":   5 * time.Millisecond,
		"cloud_datastore_v1.RunQuery": 5 * time.Millisecond,
		"cloud_datastore_v1.Commit":   20 * time.Millisecond,
	}
	for _, lat := range []string{"model", "none"} {
		for _, w := range benchWorkloads {
			for _, s := range stores {
				b.Run(fmt.Sprintf("latency=%s/workload=%s/store=%s", lat, w.name, s.name), func(b *testing.B) {
					e := newEnv(b)
					ctx := appengine.WithAPICallFunc(e.aeCtx(), e.srv.Call)
					n := 100
					if w.perRequest {
						n = b.N
					}
					ids := make([]string, n)
					for i := range ids {
						st := s.new(e, ctx)
						sess := session.NewSessionOptions(&session.SessOptions{Attrs: map[string]any{"n": -1}, Timeout: time.Hour})
						st.Add(sess)
						st.Close()
						ids[i] = sess.ID()
					}
					if lat == "model" {
						for k, d := range latency {
							e.srv.SetLatency(k, d)
						}
					}
					e.srv.ResetStats()
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						st := s.new(e, ctx)
						w.do(st, i, ids)
						st.Close()
					}
					b.StopTimer()
					nf := float64(b.N)
					var mc, ds int64
					for k, v := range e.srv.Stats() {
						switch {
						case strings.HasPrefix(k, "memcache."):
							mc += v
						case strings.HasPrefix(k, "datastore_v3."), strings.HasPrefix(k, "cloud_datastore_v1."):
							ds += v
						}
					}
					b.ReportMetric(float64(mc)/nf, "memcache-rpc/op")
					b.ReportMetric(float64(ds)/nf, "datastore-rpc/op")
				})
			}
		}
	}
}
