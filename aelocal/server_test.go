package aelocal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/protobuf/proto"
)

func TestUnknownMethod(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		req, _ := newMsg("appengine.v2.MemcacheFlushRequest")
		resp, _ := newMsg("appengine.v2.MemcacheFlushResponse")
		err := appengine.APICall(ctx, "memcache", "NoSuchMethod", protoV1(req), protoV1(resp))
		if err == nil || !strings.Contains(err.Error(), "aelocal does not serve memcache.NoSuchMethod") {
			t.Fatalf("got %v, want a not-implemented error", err)
		}
		err = appengine.APICall(ctx, "nosuchservice", "Get", protoV1(req), protoV1(resp))
		if err == nil || !strings.Contains(err.Error(), "aelocal does not serve nosuchservice.Get") {
			t.Fatalf("got %v, want a not-implemented error", err)
		}
		// Services App Engine has and aelocal does not emulate say so.
		err = appengine.APICall(ctx, "xmpp", "SendMessage", protoV1(req), protoV1(resp))
		if err == nil || !strings.Contains(err.Error(), "aelocal does not serve xmpp.SendMessage: the xmpp service is not emulated locally") {
			t.Fatalf("got %v, want a not-served error", err)
		}
	})
}

func TestMalformedBridgeBodyKeepsServing(t *testing.T) {
	s := newTestServer(t)
	for _, body := range [][]byte{nil, []byte("garbage"), {0xff, 0xff, 0xff}} {
		resp := postBridge(t, s, body)
		if !resp.Has("rpc_error") {
			t.Fatalf("body %q: want an rpc_error, got %v", body, resp.m)
		}
	}
	// A well-formed envelope around a malformed service request.
	env, _ := newMsg("remote_api.v2.Request")
	env.Set("service_name", "memcache")
	env.Set("method", "Get")
	env.Set("request", []byte{0x0a, 0xff})
	b, _ := env.Marshal()
	if resp := postBridge(t, s, b); !resp.Has("rpc_error") {
		t.Fatalf("want an rpc_error for a bad inner request, got %v", resp.m)
	}
	// And the server still answers.
	if got := s.Stats()["memcache.Get"]; got != 1 {
		t.Fatalf("memcache.Get count = %d, want 1", got)
	}
}

func TestBridgeRejectsGET(t *testing.T) {
	s := newTestServer(t)
	resp, err := http.Get(s.URL() + "/rpc_http")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		s.SetLatency("memcache", time.Hour)
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		req, _ := newMsg("appengine.v2.MemcacheFlushRequest")
		resp, _ := newMsg("appengine.v2.MemcacheFlushResponse")
		err := appengine.APICall(ctx, "memcache", "FlushAll", protoV1(req), protoV1(resp))
		if err == nil {
			t.Fatal("want a timeout error")
		}
		if !appengine.IsTimeoutError(err) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want a timeout", err)
		}
	})
}

// The client may send a deadline that has passed (negative, when its
// context's deadline passes between its check and its send): the call
// ends at once instead of waiting on an injected latency.
func TestBridgePassedDeadline(t *testing.T) {
	s := newTestServer(t)
	s.SetLatency("memcache", time.Hour)
	inner, _ := newMsg("appengine.v2.MemcacheFlushRequest")
	innerBytes, _ := inner.Marshal()
	req, _ := newMsg("remote_api.v2.Request")
	req.Set("service_name", "memcache")
	req.Set("method", "FlushAll")
	req.Set("request", innerBytes)
	body, _ := req.Marshal()
	for _, d := range []string{"-0.004", "0", "-Inf"} {
		hr, err := http.NewRequest("POST", s.URL()+"/rpc_http", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		setBridgeHeaders(hr.Header)
		hr.Header.Set("X-Google-RPC-Service-Deadline", d)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out, _ := newMsg("remote_api.v2.Response")
		if err := proto.Unmarshal(b, out.m.Interface()); err != nil {
			t.Fatal(err)
		}
		if code := out.Msg("rpc_error").Int("code"); code != rpcDeadlineExceeded {
			t.Fatalf("deadline %s: rpc_error %d, want DEADLINE_EXCEEDED", d, code)
		}
	}
}

func postBridge(t *testing.T, s *Server, body []byte) pmsg {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL()+"/rpc_http", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	setBridgeHeaders(req.Header)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	if hr.StatusCode != 200 {
		t.Fatalf("HTTP %d", hr.StatusCode)
	}
	b, _ := io.ReadAll(hr.Body)
	resp, _ := newMsg("remote_api.v2.Response")
	if err := proto.Unmarshal(b, resp.m.Interface()); err != nil {
		t.Fatal(err)
	}
	return resp
}

// As on App Engine, a call made on a context that has ended fails without
// reaching the service.
func TestCallOnFinishedContext(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		req, _ := newMsg("appengine.v2.MemcacheFlushRequest")
		resp, _ := newMsg("appengine.v2.MemcacheFlushResponse")
		if err := appengine.APICall(ctx, "memcache", "FlushAll", protoV1(req), protoV1(resp)); err == nil {
			t.Fatal("want an error")
		}
		if n := s.Stats()["memcache.FlushAll"]; n != 0 {
			t.Fatalf("the server saw %d calls", n)
		}
	})
}
