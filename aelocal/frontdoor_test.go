package aelocal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/protobuf/proto"
)

// setEnvelope is a bridge call that stores memcache key k, as the client
// encodes it.
func setEnvelope(t *testing.T, k string) []byte {
	t.Helper()
	req, _ := newMsg("appengine.v2.MemcacheSetRequest")
	it := req.AppendMsg("item")
	it.Set("key", k)
	it.Set("value", "v")
	it.Set("set_policy", mcSetPolicySet)
	inner, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, _ := newMsg("remote_api.v2.Request")
	env.Set("service_name", "memcache")
	env.Set("method", "Set")
	env.Set("request", inner)
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send makes one request to s and returns its status and body.
func send(t *testing.T, s *Server, method, path string, body []byte, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		if k == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func bridgeHeaders() http.Header {
	h := http.Header{}
	setBridgeHeaders(h)
	return h
}

func stored(t *testing.T, s *Server, k string) bool {
	t.Helper()
	s.memcache.mu.Lock()
	defer s.memcache.mu.Unlock()
	return s.memcache.items[mcKey{"", k}] != nil
}

// What a web page can send to the server does not reach a service.
func TestFrontDoorRefusesWebPages(t *testing.T) {
	s := newTestServer(t)
	with := func(mod func(h http.Header)) http.Header {
		h := bridgeHeaders()
		mod(h)
		return h
	}
	cases := []struct {
		name string
		path string
		h    http.Header
		want int
	}{
		// A form or fetch() without preflight: a "simple request".
		{"simple request", "/rpc_http", http.Header{"Content-Type": {"text/plain"}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"simple request without Origin", "/rpc_http", http.Header{"Content-Type": {"text/plain"}}, http.StatusBadRequest},
		{"simple request to /", "/", http.Header{"Content-Type": {"text/plain"}}, http.StatusNotFound}, // the console's answer; 405 would do
		{"bridge headers with an Origin", "/rpc_http", with(func(h http.Header) { h.Set("Origin", "http://evil.example") }), http.StatusForbidden},
		{"bridge headers with the server's own Origin", "/rpc_http", with(func(h http.Header) { h.Set("Origin", s.URL()) }), http.StatusForbidden},
		{"bridge headers with Origin null", "/", with(func(h http.Header) { h.Set("Origin", "null") }), http.StatusForbidden},
		{"text/plain with bridge headers", "/rpc_http", with(func(h http.Header) { h.Set("Content-Type", "text/plain") }), http.StatusBadRequest},
		{"wrong endpoint header", "/rpc_http", with(func(h http.Header) { h.Set(bridgeEndpointHeader, "x") }), http.StatusBadRequest},
		{"missing method header", "/anything", with(func(h http.Header) { h.Del(bridgeMethodHeader) }), http.StatusBadRequest},
		// DNS rebinding: the page's own name, now resolving to 127.0.0.1.
		{"rebound host name", "/rpc_http", with(func(h http.Header) { h.Set("Host", "evil.example:10001") }), http.StatusForbidden},
		{"rebound host name, no port", "/rpc_http", with(func(h http.Header) { h.Set("Host", "evil.example") }), http.StatusForbidden},
		{"localhost lookalike", "/rpc_http", with(func(h http.Header) { h.Set("Host", "localhost.evil.example") }), http.StatusForbidden},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := fmt.Sprint("k", i)
			status, body := send(t, s, "POST", c.path, setEnvelope(t, key), c.h)
			if status != c.want && !(c.want == http.StatusNotFound && status == http.StatusMethodNotAllowed) {
				t.Fatalf("status %d, want %d; body %q", status, c.want, body)
			}
			if !strings.HasPrefix(body, "aelocal: ") && c.path != "/" { // the console answers "/" with a page
				t.Fatalf("body %q does not say why", body)
			}
			if stored(t, s, key) {
				t.Fatal("the call reached memcache")
			}
		})
	}
	if n := len(s.Stats()); n != 0 {
		t.Fatalf("refused requests were counted as calls: %v", s.Stats())
	}
	// The status page checks the host as well.
	if status, _ := send(t, s, "GET", "/", nil, http.Header{"Host": {"evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("status page for a rebound name: %d", status)
	}
	if status, _ := send(t, s, "GET", "/", nil, http.Header{"Origin": {"http://evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("status page fetched by another origin: %d", status)
	}
}

func TestFrontDoorAcceptsClients(t *testing.T) {
	s, err := NewServerOptions(&Options{AllowedHosts: []string{"aelocal.internal:9999", "Other.Example."}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, port := s.Addr()
	for i, c := range []struct{ path, host string }{
		{"/rpc_http", ""},
		{"/", ""}, // appengine v1 posting to a bare URL
		{"/any/path", ""},
		{"/rpc_http", "localhost:" + port},
		{"/rpc_http", "LOCALHOST"},
		{"/rpc_http", "127.0.0.2:" + port},
		{"/rpc_http", "[::1]:" + port},
		{"/rpc_http", "aelocal.internal:" + port},
		{"/rpc_http", "other.example"},
	} {
		h := bridgeHeaders()
		if c.host != "" {
			h.Set("Host", c.host)
		}
		key := fmt.Sprint("k", i)
		status, body := send(t, s, "POST", c.path, setEnvelope(t, key), h)
		if status != http.StatusOK || !stored(t, s, key) {
			t.Fatalf("POST %s Host %q: status %d, stored %v; body %q", c.path, c.host, status, stored(t, s, key), body)
		}
	}
	// A page may post to itself: a browser sends its own origin.
	if status, _ := send(t, s, "GET", "/", nil, http.Header{"Origin": {s.URL()}}); status != http.StatusOK {
		t.Fatalf("status page with its own origin: %d", status)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusOK},
		{"HEAD", "/", http.StatusOK},
		{"GET", "/rpc_http", http.StatusMethodNotAllowed},
		{"GET", "/nope", http.StatusNotFound},
		{"POST", "/nope", http.StatusNotFound},
		{"DELETE", "/nope", http.StatusNotFound},
	} {
		if status, _ := send(t, s, c.method, c.path, nil, nil); status != c.want {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, status, c.want)
		}
	}
}

// A client can send any method name; each unknown one must not cost the
// server a map entry for ever.
func TestStatsCountUnknownMethodsTogether(t *testing.T) {
	s := newTestServer(t)
	for i := 0; i < 300; i++ {
		env, _ := newMsg("remote_api.v2.Request")
		env.Set("service_name", strings.Repeat("s", 100000))
		env.Set("method", fmt.Sprint("Hostile", i))
		env.Set("request", []byte{})
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if resp := postBridge(t, s, b); !resp.Has("rpc_error") {
			t.Fatal("an unknown method was served")
		}
	}
	postBridge(t, s, setEnvelope(t, "k"))
	st := s.Stats()
	if len(st) != 2 || st[OtherCalls] != 300 || st["memcache.Set"] != 1 {
		t.Fatalf("Stats = %v", st)
	}
	// The console's RPC log keeps the latest calls, each name cut short.
	s.rpcs.mu.Lock()
	for _, rec := range s.rpcs.buf {
		if len(rec.Name) > maxUnknownName+10 || len(rec.Outcome) > 2*maxUnknownName+100 {
			t.Errorf("RPC log record of %d+%d bytes", len(rec.Name), len(rec.Outcome))
		}
	}
	s.rpcs.mu.Unlock()
}

// Bodies wait for the byte budget: they are read only once the bytes in
// flight leave room for them.
func TestBridgeBodiesShareAByteBudget(t *testing.T) {
	s := newTestServer(t)
	all := defaultBodyBudget
	if err := s.budget.acquire(context.Background(), int64(all)); err != nil {
		t.Fatal(err)
	}
	done := make(chan pmsg, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.URL()+"/rpc_http", bytes.NewReader(setEnvelope(t, "k")))
		setBridgeHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			done <- pmsg{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r, _ := newMsg("remote_api.v2.Response")
		proto.Unmarshal(b, r.m.Interface())
		done <- r
	}()
	waitFor(t, "the call to wait for the budget", func() bool {
		s.budget.mu.Lock()
		defer s.budget.mu.Unlock()
		return len(s.budget.waiters) == 1
	})
	if stored(t, s, "k") {
		t.Fatal("the call was served without budget")
	}
	s.budget.release(int64(all))
	if r := <-done; r.m == nil || r.Has("rpc_error") || !stored(t, s, "k") {
		t.Fatal("the call failed once the budget was free")
	}
	s.budget.mu.Lock()
	free := s.budget.free
	s.budget.mu.Unlock()
	if free != int64(all) {
		t.Fatalf("budget not returned: %d of %d free", free, all)
	}
}

func TestBridgeRefusesOversizedBody(t *testing.T) {
	s := newTestServer(t)
	// Only the length is sent: the server refuses before reading.
	conn, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /rpc_http HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: %s\r\n%s: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		bridgeEndpointHeader, bridgeEndpointValue, bridgeMethodHeader, bridgeMethodValue, bridgeContentType, maxRequestBytes+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	r, _ := newMsg("remote_api.v2.Response")
	if err := proto.Unmarshal(b, r.m.Interface()); err != nil || r.Msg("rpc_error").Int("code") != rpcRequestTooLarge {
		t.Fatalf("reply %v, %v; want REQUEST_TOO_LARGE", r.m, err)
	}
}

// keepAlive opens a connection to s, makes one request on it and leaves it
// idle.
func keepAlive(t *testing.T, s *Server) net.Conn {
	t.Helper()
	return keepAliveAt(t, s.ln.Addr().String(), "/")
}

// keepAliveAt opens a connection to addr, GETs path on it and leaves it
// idle.
func keepAliveAt(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return conn
}

func TestIdleConnectionsAreCappedAndClosed(t *testing.T) {
	o := &Options{maxConns: 4}
	s, err := NewServerOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []net.Conn
	l := s.limiter
	for i := 0; i < 20; i++ {
		conns = append(conns, keepAlive(t, s))
		if n := l.open(); n > 4 {
			t.Fatalf("%d connections open, cap 4", n)
		}
		// The server marks a connection idle a moment after it answered;
		// wait for that, so that which one is idle longest is known.
		waitFor(t, "the connection to be idle", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.idle) == l.open()
		})
	}
	// The oldest idle ones made room; the newest still work.
	for i, c := range conns[:16] {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("old idle connection %d: read %v, want EOF (closed by the server)", i, err)
		}
		c.Close()
	}
	for _, c := range conns[16:] {
		c.Close()
	}

	// Idle connections are closed after the idle timeout.
	o = &Options{idleTimeout: 50 * time.Millisecond}
	s2, err := NewServerOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c := keepAlive(t, s2)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}

func TestSlowBodyTimesOut(t *testing.T) {
	s, err := NewServerOptions(&Options{bodyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /rpc_http HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: %s\r\n%s: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\nonly a few bytes",
		bridgeEndpointHeader, bridgeEndpointValue, bridgeMethodHeader, bridgeMethodValue, bridgeContentType)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	r, _ := newMsg("remote_api.v2.Response")
	if err := proto.Unmarshal(b, r.m.Interface()); err != nil || !strings.Contains(r.Msg("rpc_error").Str("detail"), "timeout") {
		t.Fatalf("reply %v, %v; want a read timeout", r.m, err)
	}
	s.budget.mu.Lock()
	free := s.budget.free
	s.budget.mu.Unlock()
	if free != defaultBodyBudget {
		t.Fatalf("the stalled body kept %d bytes of the budget", defaultBodyBudget-free)
	}
}

func TestSetTimeStopsTheClock(t *testing.T) {
	s := newTestServer(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetTime(t0)
	ctx := middlewareContext(t, s)
	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v"), Expiration: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s.FastForward(10*time.Second - time.Nanosecond)
	if !s.Now().Equal(t0.Add(10*time.Second - time.Nanosecond)) {
		t.Fatalf("Now = %v", s.Now())
	}
	wantValue(t, ctx, "k", "v")
	s.FastForward(time.Nanosecond)
	wantMiss(t, ctx, "k")
	s.SetTime(time.Time{})
	if d := time.Since(s.Now()); d < -time.Hour || d > time.Hour {
		t.Fatalf("after SetTime(zero), Now = %v", s.Now())
	}
}
