package gaesession

import (
	"context"
	"io"
	stdlog "log"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2/datastore"
)

// Latency model of BenchmarkPurge: round trips to the production Datastore
// from an App Engine instance, as commonly observed. Fetching a batch of
// keys (RunQuery or Next) costs about 20ms; a DeleteMulti is a write that
// commits through the indexes and takes longer, about 30ms. The figures
// are an assumption, not a measurement: they make the number of RPCs and
// their overlap, not aelocal's own speed, decide the results.
var purgeBenchLatency = map[string]time.Duration{
	"datastore_v3.RunQuery": 20 * time.Millisecond,
	"datastore_v3.Next":     20 * time.Millisecond,
	"datastore_v3.Delete":   30 * time.Millisecond,
}

// BenchmarkPurge measures one purge of 2,000 expired sessions (next to 100
// live ones) under purgeBenchLatency. Storing the sessions is not timed.
// Besides the time per purge it reports entities/RPC (entities deleted per
// Datastore RPC) and entities/s (entities deleted per second of purging).
//
// "original/batch=100" is the original package's loop, restated for
// comparison: a keys-only GetAll of 100 from the start of the index, then
// a DeleteMulti, one after the other, until a query finds nothing.
func BenchmarkPurge(b *testing.B) {
	b.Run("batch=100", func(b *testing.B) { purgeBench(b, purgeBenchHandler(100)) })
	b.Run("batch=500", func(b *testing.B) { purgeBench(b, purgeBenchHandler(500)) })
	b.Run("original/batch=100", func(b *testing.B) { purgeBench(b, purgeBenchOriginal) })
}

const purgeBenchExpired, purgeBenchLive = 2000, 100

// A purgeBenchFunc purges and returns the number of entities it deleted.
type purgeBenchFunc func(b *testing.B, srv *aelocal.Server, ctx context.Context) int

func purgeBenchHandler(batch int) purgeBenchFunc {
	h := PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{BatchSize: batch})
	return func(b *testing.B, srv *aelocal.Server, _ context.Context) int {
		r := callPurge(b, srv, h, nil, purgeQuietContext)
		if !r.resp.Completed {
			b.Fatalf("purge did not complete: %s", r.body)
		}
		return r.resp.Deleted
	}
}

func purgeBenchOriginal(b *testing.B, _ *aelocal.Server, ctx context.Context) int {
	q := datastore.NewQuery(defaultDSEntityName).Filter("exp <", time.Now()).KeysOnly().Limit(100)
	n := 0
	for {
		keys, err := q.GetAll(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(keys) == 0 {
			return n
		}
		if err := datastore.DeleteMulti(ctx, keys); err != nil {
			b.Fatal(err)
		}
		n += len(keys)
	}
}

func purgeBench(b *testing.B, purge purgeBenchFunc) {
	srv := newPurgeServer(b)
	ctx := purgeCtx(srv)
	purgePutSessions(b, ctx, "sess_", "live", purgeBenchLive, time.Now().Add(time.Hour))
	for k, d := range purgeBenchLatency {
		srv.SetLatency(k, d)
	}
	// Keep the purge's summary lines out of the benchmark's output, where
	// they would split result lines (see purgeQuietContext).
	prevOut := stdlog.Writer()
	stdlog.SetOutput(io.Discard)
	b.Cleanup(func() { stdlog.SetOutput(prevOut) })

	var rpcs int64
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		purgePutSessions(b, ctx, "sess_", "expired", purgeBenchExpired, purgeDue(time.Now()))
		srv.ResetStats()
		b.StartTimer()
		t0 := time.Now()
		deleted := purge(b, srv, ctx)
		elapsed += time.Since(t0)
		b.StopTimer()
		if deleted != purgeBenchExpired {
			b.Fatalf("deleted %d, want %d", deleted, purgeBenchExpired)
		}
		for k, v := range srv.Stats() {
			if strings.HasPrefix(k, "datastore_v3.") {
				rpcs += v
			}
		}
	}
	b.ReportMetric(float64(purgeBenchExpired*b.N)/float64(rpcs), "entities/RPC")
	b.ReportMetric(float64(purgeBenchExpired*b.N)/elapsed.Seconds(), "entities/s")
}

// purgeQuietContext hides the App Engine request state of ctx from
// appengine/v2/log, so that the package's logger falls back to the standard
// logger, which purgeBench silences. API calls still reach aelocal: their
// routing is another value of ctx. Benchmarks only.
func purgeQuietContext(ctx context.Context) context.Context { return purgeQuietCtx{ctx} }

type purgeQuietCtx struct{ context.Context }

func (c purgeQuietCtx) Value(key any) any {
	v := c.Context.Value(key)
	if v != nil && reflect.TypeOf(v).String() == "*internal.aeContext" {
		return nil
	}
	return v
}
