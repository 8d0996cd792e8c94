package aelocal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// bigEntity is an entity of about size bytes.
type bigEntity struct {
	B []byte `datastore:",noindex"`
}

// putBig stores one entity of size bytes and returns its key.
func putBig(t *testing.T, ctx context.Context, name string, size int) *datastore.Key {
	t.Helper()
	k := datastore.NewKey(ctx, "Big", name, 0, nil)
	b := bytes.Repeat([]byte{byte(len(name))}, size)
	if _, err := datastore.Put(ctx, k, &bigEntity{B: b}); err != nil {
		t.Fatal(err)
	}
	return k
}

func repeatKey(k *datastore.Key, n int) []*datastore.Key {
	keys := make([]*datastore.Key, n)
	for i := range keys {
		keys[i] = k
	}
	return keys
}

// TestGetAnswerIsBounded: a GetMulti whose answer would pass
// maxResponseBytes fails with RESPONSE_TOO_LARGE through the real client,
// on both paths; one just below it returns every entity.
func TestGetAnswerIsBounded(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		const size = 1000000
		k := putBig(t, ctx, "one", size)
		over := maxResponseBytes/size + 1
		err := datastore.GetMulti(ctx, repeatKey(k, over), make([]bigEntity, over))
		if err == nil || !strings.Contains(err.Error(), "datastore_v3.Get() was too large") {
			t.Fatalf("GetMulti of %d copies of a 1 MB entity: got %v, want the response too large", over, err)
		}
		under := maxResponseBytes/size - 1
		dst := make([]bigEntity, under)
		if err := datastore.GetMulti(ctx, repeatKey(k, under), dst); err != nil {
			t.Fatalf("GetMulti of %d copies: %v", under, err)
		}
		for i, e := range dst {
			if len(e.B) != size || e.B[0] != 3 {
				t.Fatalf("entity %d: %d bytes", i, len(e.B))
			}
		}
	})
}

// TestGetRefusalIsRPCError: the refusal is the bridge's RPC error
// RESPONSE_TOO_LARGE (9), not an application error of the datastore.
func TestGetRefusalIsRPCError(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	k := putBig(t, ctx, "one", 1000000)
	err := datastore.GetMulti(ctx, repeatKey(k, 1000), make([]bigEntity, 1000))
	if err == nil || !strings.HasPrefix(err.Error(), "Call error 9: ") {
		t.Fatalf("got %v, want the client's CallError 9 (RESPONSE_TOO_LARGE)", err)
	}
	if _, ok := err.(appengine.MultiError); ok {
		t.Fatal("a MultiError: the call should fail as a whole")
	}
}

// TestGetDefersAsTheStub: a client that sets allow_deferred gets at most
// 300 keys looked up and about 2,000,000 bytes of entities, the rest
// deferred, as from the SDK's stub; asking again for the deferred keys
// brings every entity. The call goes through the real client's transport.
func TestGetDefersAsTheStub(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	small := putBig(t, ctx, "s", 10)
	k1 := putBig(t, ctx, "aa", 900000)
	k2 := putBig(t, ctx, "bbb", 900000)
	k3 := putBig(t, ctx, "cccc", 900000)

	get := func(keys []*datastore.Key) pmsg {
		t.Helper()
		in, _ := newMsg("appengine.v2.GetRequest")
		out, _ := newMsg("appengine.v2.GetResponse")
		for _, k := range keys {
			ref, _ := newMsg("appengine.v2.Reference")
			ref.Set("app", k.AppID())
			e := ref.Mutable("path").AppendMsg("element")
			e.Set("type", k.Kind())
			e.Set("name", k.StringID())
			in.AppendMsg("key").CopyFrom(ref)
		}
		in.Set("allow_deferred", true)
		if err := appengine.APICall(ctx, "datastore_v3", "Get", protoV1(in), protoV1(out)); err != nil {
			t.Fatal(err)
		}
		if out.Bool("in_order") {
			t.Error("in_order is true for a call with allow_deferred")
		}
		return out
	}

	// 400 keys: the first 100 are deferred, the last 300 looked up.
	keys := repeatKey(small, 400)
	out := get(keys)
	if got := out.Len("entity"); got != 300 {
		t.Errorf("400 small keys: %d entities, want 300", got)
	}
	if got := out.Len("deferred"); got != 100 {
		t.Errorf("400 small keys: %d deferred, want 100", got)
	}

	// Three 900 KB entities: two fit in 2,000,000 bytes, the third is
	// deferred; asked again, it comes back.
	out = get([]*datastore.Key{k1, k2, k3})
	if got := out.Len("entity"); got != 2 {
		t.Fatalf("three 900 KB entities: %d in the answer, want 2", got)
	}
	def := out.Msgs("deferred")
	if len(def) != 1 || def[0].Msg("path").Msgs("element")[0].Str("name") != "cccc" {
		t.Fatalf("deferred: %v, want the third key", def)
	}
	out = get([]*datastore.Key{k3})
	if out.Len("entity") != 1 || out.Len("deferred") != 0 {
		t.Fatal("the deferred key asked alone did not come back")
	}

	// The first entity always comes back, however big.
	out = get([]*datastore.Key{k1})
	if out.Len("entity") != 1 || !out.Msgs("entity")[0].Has("entity") {
		t.Fatal("a single 900 KB entity was deferred")
	}
}

// TestBridgeSendsAnAnswerOnce: a bridge call's answer is encoded once and
// written as it is, not copied again into the envelope. Bytes allocated
// are counted exactly by the runtime (TotalAlloc); the answer goes to a
// writer that keeps nothing.
func TestBridgeSendsAnAnswerOnce(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	const size, n = 1000000, 40
	k := putBig(t, ctx, "one", size)
	body := getCopiesCall(k, n)

	r := httptest.NewRequest("POST", "/rpc_http", bytes.NewReader(body))
	w := &discardingWriter{h: http.Header{}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s.serveBridge(w, r)
	runtime.ReadMemStats(&after)
	if w.n < n*size {
		t.Fatalf("answer of %d bytes for %d entities of %d bytes", w.n, n, size)
	}
	// Marshalling the envelope too doubled this (2.0x measured before).
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(w.n)*3/2 {
		t.Errorf("a bridge Get of %d copies allocated %d bytes for an answer of %d bytes", n, alloc, w.n)
	}
}

// discardingWriter is an http.ResponseWriter that counts what is written.
type discardingWriter struct {
	h http.Header
	n int
}

func (w *discardingWriter) Header() http.Header { return w.h }
func (w *discardingWriter) WriteHeader(int)     {}
func (w *discardingWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	return len(b), nil
}

// TestBridgeAnswersShareAByteBudget: encoded answers not yet sent hold a
// share of a byte budget, so parallel large answers wait instead of all
// being held at once. A client that stops reading a 48 MB answer keeps
// its share; a second 48 MB answer must wait, and gets it once the first
// is read.
func TestBridgeAnswersShareAByteBudget(t *testing.T) {
	s, err := NewServerOptions(&Options{answerBudget: 60 << 20, bodyTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := bridgeContext(t, s)
	const size, n = 1000000, 48
	k := putBig(t, ctx, "one", size)

	// The first call, over a connection that does not read its answer.
	body := getCopiesCall(k, n)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /rpc_http HTTP/1.1\r\nHost: %s\r\nX-Google-RPC-Service-Endpoint: app-engine-apis\r\nX-Google-RPC-Service-Method: /VMRemoteAPI.CallRemoteAPI\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", strings.TrimPrefix(s.URL(), "http://"), len(body))
	conn.Write(body)
	for start := time.Now(); ; {
		if time.Since(start) > time.Minute { // only stops a test that would hang
			t.Fatal("the first answer never held a share of the budget")
		}
		s.answers.mu.Lock()
		free := s.answers.free
		s.answers.mu.Unlock()
		if free < 60<<20-n*size {
			break // the first answer holds its share
		}
		time.Sleep(time.Millisecond)
	}

	// The second waits for its share until its deadline.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := datastore.GetMulti(short, repeatKey(k, n), make([]bigEntity, n)); err == nil {
		t.Fatal("a second 48 MB answer was served while the first one held the budget")
	}

	// Once the first is read, the second is served.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) < n*size {
		t.Fatalf("the first answer has %d bytes", len(got))
	}
	if err := datastore.GetMulti(ctx, repeatKey(k, n), make([]bigEntity, n)); err != nil {
		t.Fatal(err)
	}
}

// getCopiesCall is the body of a bridge call of datastore_v3.Get that asks
// for the named key k n times over.
func getCopiesCall(k *datastore.Key, n int) []byte {
	req, _ := newMsg("appengine.v2.GetRequest")
	ref, _ := newMsg("appengine.v2.Reference")
	ref.Set("app", k.AppID())
	e := ref.Mutable("path").AppendMsg("element")
	e.Set("type", k.Kind())
	e.Set("name", k.StringID())
	for i := 0; i < n; i++ {
		req.AppendMsg("key").CopyFrom(ref)
	}
	call, _ := newMsg("remote_api.v2.Request")
	call.Set("service_name", "datastore_v3")
	call.Set("method", "Get")
	b, _ := req.Marshal()
	call.Set("request", b)
	body, _ := call.Marshal()
	return body
}
