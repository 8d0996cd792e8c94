package gaesession

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// reqBenchLatency models the round trips of App Engine's bundled services
// as seen from an instance: about 1ms for a Memcache call, 10ms for a
// Datastore lookup and 30ms for a Datastore write (put or delete), which
// commits through the indexes. The figures are an assumption, not a measurement. aelocal
// adds them server-side to every call (SetLatency), so the time of a
// request is decided by how many calls it makes and which of them overlap:
// the store sends the Memcache set and the Datastore put of a write in
// parallel, so a modifying request costs 1ms (get) + max(1ms, 30ms).
var reqBenchLatency = map[string]time.Duration{
	"memcache":            time.Millisecond,
	"datastore_v3.Get":    10 * time.Millisecond,
	"datastore_v3.Put":    30 * time.Millisecond,
	"datastore_v3.Delete": 30 * time.Millisecond,
}

// reqBenchPool is the number of sessions the read and modify workloads
// spread their requests over.
const reqBenchPool = 100

// reqBenchConfigs are the store configurations compared. "always" writes
// every accessed session back on Close, as the original package did;
// "async" saves to the Datastore after Close returns; "merge" sets
// MergeConcurrentUpdates; "memcache" sets OnlyMemcache.
var reqBenchConfigs = []struct {
	name string
	opts *MemcacheStoreOptions
}{
	{"default", nil},
	{"always", &MemcacheStoreOptions{ExpirySlack: -1}},
	{"async", &MemcacheStoreOptions{AsyncDatastoreSave: true}},
	{"merge", &MemcacheStoreOptions{MergeConcurrentUpdates: true}},
	{"memcache", &MemcacheStoreOptions{OnlyMemcache: true}},
}

// A reqBenchWorkload is what one request does with its store: i is the
// request's number, ids the prepared sessions.
type reqBenchWorkload struct {
	name string
	do   func(st session.Store, i int, ids []string)
	// configs lists the configurations this workload runs in.
	configs []string
	// perRequest: every request needs a session of its own (it removes
	// it), so b.N sessions are prepared instead of a pool.
	perRequest bool
}

var reqBenchWorkloads = []reqBenchWorkload{
	{"read", reqBenchRead, []string{"default", "always"}, false},
	{"modify", reqBenchModify, []string{"default", "always", "async", "merge", "memcache"}, false},
	{"logout", reqBenchLogout, []string{"default", "async", "merge", "memcache"}, true},
	{"new", reqBenchNew, []string{"default", "always"}, false},
	{"mixed", func(st session.Store, i int, ids []string) {
		if i%10 == 9 { // 10% modify, 90% read
			reqBenchModify(st, i, ids)
		} else {
			reqBenchRead(st, i, ids)
		}
	}, []string{"default", "always"}, false},
}

// reqBenchRead reads a session and one of its attributes.
func reqBenchRead(st session.Store, i int, ids []string) {
	sess := st.Get(ids[i%len(ids)])
	if sess == nil {
		panic("session not found")
	}
	_ = sess.Attr("n")
}

// reqBenchModify changes an attribute of a session.
func reqBenchModify(st session.Store, i int, ids []string) {
	sess := st.Get(ids[i%len(ids)])
	if sess == nil {
		panic("session not found")
	}
	sess.SetAttr("n", i)
}

// reqBenchLogout ends a session, as a logout does: Get, then Remove.
func reqBenchLogout(st session.Store, i int, ids []string) {
	sess := st.Get(ids[i])
	if sess == nil {
		panic("session not found")
	}
	st.Remove(sess)
}

// reqBenchNew starts a new session, as a request without a session cookie
// that logs in does.
func reqBenchNew(st session.Store, i int, _ []string) {
	st.Add(session.NewSessionOptions(&session.SessOptions{
		CAttrs:  map[string]interface{}{"user": "gopher"},
		Attrs:   map[string]interface{}{"n": i},
		Timeout: time.Hour,
	}))
}

// BenchmarkRequest measures one request's use of the store: a fresh store
// on the request's App Engine context, the workload's Get / SetAttr / Add,
// and Close, against aelocal through the real appengine/v2 client.
//
// latency=prod adds reqBenchLatency to every call, so ns/op is the time a
// request spends in the store in production, approximately; run it with a
// fixed count such as -benchtime 200x. latency=none shows the CPU cost and
// allocations of a request, including aelocal's side of each call, which
// runs in the same process.
//
// Besides ns/op and allocations it reports the RPCs per request by service
// (memcache-rpc/op, datastore-rpc/op) and by method ("memcache.Get/op"),
// and Datastore puts per 1,000 requests (ds-writes/1k-req).
func BenchmarkRequest(b *testing.B) {
	for _, lat := range []string{"prod", "none"} {
		for _, w := range reqBenchWorkloads {
			for _, cfgName := range w.configs {
				var opts *MemcacheStoreOptions
				found := false
				for _, c := range reqBenchConfigs {
					if c.name == cfgName {
						opts, found = c.opts, true
					}
				}
				if !found {
					b.Fatalf("unknown config %q", cfgName)
				}
				name := fmt.Sprintf("latency=%s/workload=%s/config=%s", lat, w.name, cfgName)
				b.Run(name, func(b *testing.B) { reqBench(b, lat == "prod", w, opts) })
			}
		}
	}
}

func reqBench(b *testing.B, latency bool, w reqBenchWorkload, opts *MemcacheStoreOptions) {
	srv := newTestEnv(b).srv

	// The store logs an Add at info level; appengine/v2/log would write
	// it to stderr, in the middle of the benchmark's result lines. Stores
	// made by reqBenchStore log to the standard logger instead, silenced
	// here.
	prevOut := stdlog.Writer()
	stdlog.SetOutput(io.Discard)
	b.Cleanup(func() { stdlog.SetOutput(prevOut) })

	var ids []string
	switch {
	case w.perRequest:
		ids = make([]string, b.N)
	case w.name != "new":
		ids = make([]string, reqBenchPool)
	}
	// One App Engine context serves every request: making it is the
	// framework's work, not the store's.
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	for i := range ids {
		st := reqBenchStore(ctx, opts)
		sess := session.NewSessionOptions(&session.SessOptions{
			CAttrs:  map[string]interface{}{"user": "gopher"},
			Attrs:   map[string]interface{}{"n": -1},
			Timeout: time.Hour,
		})
		st.Add(sess)
		st.Close()
		ids[i] = sess.ID()
	}
	if err := WaitForAsyncSaves(context.Background()); err != nil {
		b.Fatal(err)
	}
	if latency {
		for k, d := range reqBenchLatency {
			srv.SetLatency(k, d)
		}
	}
	srv.ResetStats()

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st := reqBenchStore(ctx, opts)
		w.do(st, i, ids)
		st.Close()
	}
	b.StopTimer()
	if err := WaitForAsyncSaves(context.Background()); err != nil {
		b.Fatal(err)
	}
	reqBenchReport(b, srv)
}

// reqBenchStore is NewMemcacheStoreOptions whose log lines go to the
// standard logger rather than through appengine/v2/log.
func reqBenchStore(ctx context.Context, opts *MemcacheStoreOptions) session.Store {
	st := NewMemcacheStoreOptions(ctx, opts)
	st.(*memcacheStore).stdLog.Store(true)
	return st
}

func reqBenchReport(b *testing.B, srv *aelocal.Server) {
	stats := srv.Stats()
	n := float64(b.N)
	b.ReportMetric(float64(total(stats, "memcache"))/n, "memcache-rpc/op")
	b.ReportMetric(float64(total(stats, "datastore_v3"))/n, "datastore-rpc/op")
	b.ReportMetric(float64(stats["datastore_v3.Put"])*1000/n, "ds-writes/1k-req")
	// Each method on its own, for example "memcache.Set/op".
	for method, count := range stats {
		b.ReportMetric(float64(count)/n, method+"/op")
	}
}
