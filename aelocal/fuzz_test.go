package aelocal

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/blobstore"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/image"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/runtime"
	"google.golang.org/appengine/v2/search"
	"google.golang.org/protobuf/proto"
)

// FuzzBridge feeds arbitrary bodies to POST /rpc_http. Whatever arrives, the
// server must answer with a well-formed remote_api.Response and must never
// reach a panic (the dispatcher turns a panic into an "internal error"
// reply, which this fuzzer treats as a failure: it means a service did not
// validate its input).
func FuzzBridge(f *testing.F) {
	for _, seed := range bridgeSeeds() {
		f.Add(seed)
	}
	for _, c := range recordClientCalls(f) {
		f.Add(c.envelope)
	}
	s := newServer()
	s.url = "http://fuzz"
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		s.serveBridge(rec, httptest.NewRequest("POST", "/rpc_http", bytes.NewReader(body)))
		checkBridgeReply(t, rec.Body.Bytes())
	})
}

// FuzzServiceRequest wraps arbitrary bytes in a valid envelope for each
// implemented method, so the fuzzer spends its time inside the services'
// request handling rather than on the envelope.
func FuzzServiceRequest(f *testing.F) {
	names := Implemented()
	index := make(map[string]uint8)
	for i, name := range names {
		index[name] = uint8(i)
		f.Add(uint8(i), []byte{})
	}
	for _, c := range append(recordClientCalls(f), recordServiceCalls(f)...) {
		f.Add(index[c.name], c.request)
	}
	s := newServer()
	s.fetch.dial = loopbackOnly
	f.Fuzz(func(t *testing.T, which uint8, req []byte) {
		if len(names) == 0 {
			return
		}
		service, method, _ := strings.Cut(names[int(which)%len(names)], ".")
		env, _ := newMsg("remote_api.v2.Request")
		env.Set("service_name", service)
		env.Set("method", method)
		env.Set("request", req)
		body, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.serveBridge(rec, httptest.NewRequest("POST", "/rpc_http", bytes.NewReader(body)))
		checkBridgeReply(t, rec.Body.Bytes())
	})
}

func checkBridgeReply(t *testing.T, reply []byte) {
	t.Helper()
	resp, _ := newMsg("remote_api.v2.Response")
	if err := proto.Unmarshal(reply, resp.m.Interface()); err != nil {
		t.Fatalf("reply is not a remote_api.Response: %v", err)
	}
	if resp.Has("rpc_error") {
		if d := resp.Msg("rpc_error").Str("detail"); strings.Contains(d, "internal error serving") {
			t.Fatalf("a service panicked: %s", d)
		}
	}
}

// bridgeSeeds are envelopes of a few ordinary calls plus some garbage.
func bridgeSeeds() [][]byte {
	seeds := [][]byte{nil, []byte("garbage"), {0x12, 0x00}, {0xff}}
	for _, name := range Implemented() {
		service, method, _ := strings.Cut(name, ".")
		env, _ := newMsg("remote_api.v2.Request")
		env.Set("service_name", service)
		env.Set("method", method)
		env.Set("request", sampleRequest(name))
		if b, err := env.Marshal(); err == nil {
			seeds = append(seeds, b)
		}
	}
	return seeds
}

type recordedCall struct {
	name     string // service.Method
	request  []byte // the service request as the client encoded it
	envelope []byte // the same wrapped in a remote_api.Request
}

// recordClientCalls runs a small workload through the real appengine/v2
// memcache and datastore clients and returns the requests they sent: seeds
// that look like real traffic, so the fuzzer mutates from meaningful input.
func recordClientCalls(tb testing.TB) []recordedCall {
	s := newTestServer(tb)
	var calls []recordedCall
	var mu sync.Mutex
	ctx := appengine.WithAPICallFunc(middlewareContext(tb, s), func(ctx context.Context, service, method string, in, out gproto.Message) error {
		req, err := gproto.Marshal(in)
		if err == nil {
			env, _ := newMsg("remote_api.v2.Request")
			env.Set("service_name", service)
			env.Set("method", method)
			env.Set("request", req)
			b, _ := env.Marshal()
			mu.Lock()
			calls = append(calls, recordedCall{service + "." + method, req, b})
			mu.Unlock()
		}
		return s.apiCall(ctx, service, method, in, out)
	})

	// Errors are expected for some calls (misses, conflicts); only the
	// requests matter here.
	item := &memcache.Item{Key: "k", Value: []byte("v"), Expiration: time.Minute}
	memcache.Set(ctx, item)
	memcache.Add(ctx, item)
	if got, err := memcache.Get(ctx, "k"); err == nil {
		got.Value = []byte("w")
		memcache.CompareAndSwap(ctx, got)
	}
	memcache.GetMulti(ctx, []string{"k", "missing"})
	memcache.Increment(ctx, "n", 5, 10)
	memcache.IncrementExisting(ctx, "n", -2)
	memcache.Delete(ctx, "k")
	memcache.Stats(ctx)
	memcache.Flush(ctx)

	type entity struct {
		Exp  time.Time `datastore:"exp"`
		Val  []byte    `datastore:"val,noindex"`
		Tags []string
	}
	parent := datastore.NewKey(ctx, "P", "p", 0, nil)
	keys := []*datastore.Key{
		datastore.NewKey(ctx, "sess_", "a", 0, nil),
		datastore.NewKey(ctx, "sess_", "", 7, parent),
		datastore.NewIncompleteKey(ctx, "sess_", nil),
	}
	ents := []entity{{time.Now(), []byte("x"), []string{"a", "b"}}, {time.Now().Add(time.Hour), nil, nil}, {}}
	if keys, err := datastore.PutMulti(ctx, keys, ents); err == nil {
		datastore.GetMulti(ctx, keys, make([]entity, len(keys)))
		datastore.DeleteMulti(ctx, keys[:1])
	}
	datastore.AllocateIDs(ctx, "sess_", nil, 3)
	q := datastore.NewQuery("sess_").Filter("exp <", time.Now().Add(time.Minute)).Order("-exp").Limit(10).KeysOnly()
	it := q.Run(ctx)
	for {
		if _, err := it.Next(nil); err != nil {
			break
		}
	}
	if c, err := it.Cursor(); err == nil {
		datastore.NewQuery("sess_").Ancestor(parent).Start(c).Offset(1).Count(ctx)
	}
	var rows []datastore.PropertyList
	datastore.NewQuery("sess_").Project("Tags").Distinct().GetAll(ctx, &rows)
	pq := datastore.NewQuery("sess_").Project("exp", "Tags").DistinctOn("Tags").Filter("Tags >", "a").Order("Tags")
	if c, err := pq.Run(ctx).Cursor(); err == nil {
		pq.Start(c).Limit(1).GetAll(ctx, &rows)
	}
	datastore.KindProperties(ctx, "sess_")

	// The services added since: search, blobstore, images, system.
	if idx, err := search.Open("fuzz"); err == nil {
		doc := &search.FieldList{{Name: "T", Value: "hello world"}, {Name: "N", Value: float64(3)}, {Name: "A", Value: search.Atom("x")}}
		idx.Put(ctx, "d1", doc)
		idx.Get(ctx, "d1", &search.FieldList{})
		opts := &search.SearchOptions{Limit: 5, Sort: &search.SortOptions{Expressions: []search.SortExpression{{Expr: "N", Reverse: true}}}}
		var got search.FieldList
		idx.Search(ctx, `hello AND N > 1 OR A:x`, opts).Next(&got)
		idx.List(ctx, &search.ListOptions{Limit: 2, IDsOnly: true}).Next(nil)
		idx.Delete(ctx, "d1")
	}
	blobstore.UploadURL(ctx, "/uploaded", &blobstore.UploadURLOptions{MaxUploadBytes: 1 << 20})
	blobstore.Stat(ctx, "key")
	blobstore.NewReader(ctx, "key").Read(make([]byte, 8))
	blobstore.Delete(ctx, "key")
	image.ServingURL(ctx, "key", &image.ServingURLOptions{Size: 32, Crop: true})
	image.DeleteServingURL(ctx, "key")
	runtime.Stats(ctx)
	return calls
}

// sampleRequest returns an encoded, plausible request for a method, or nil.
func sampleRequest(name string) []byte {
	spec, ok := methods[name]
	if !ok {
		return nil
	}
	m, err := newMsg(spec.req)
	if err != nil {
		return nil
	}
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m.m.Interface())
	if err != nil {
		return nil
	}
	return b
}
