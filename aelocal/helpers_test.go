package aelocal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
)

// newTestServer starts a Server that the test closes when it ends.
func newTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stopClock stops s's clock (SetTime), so that only FastForward moves it:
// a check of expiry to the second then does not depend on how fast a
// loaded machine runs the test. The clock stops on a whole microsecond, the
// resolution of the times services keep.
func stopClock(s *Server) { s.SetTime(time.Now().Truncate(time.Microsecond)) }

// middlewareContext returns an App Engine context whose calls s serves
// in-process (Server.NewRequest).
func middlewareContext(t testing.TB, s *Server) context.Context {
	t.Helper()
	return appengine.NewContext(s.NewRequest("GET", "/", nil))
}

// bridgeContext returns an App Engine context made by the real
// appengine.Middleware, whose calls travel over HTTP to s's /rpc_http
// because API_HOST and API_PORT point there. The test must not be parallel:
// the variables are process-wide.
func bridgeContext(t testing.TB, s *Server) context.Context {
	t.Helper()
	host, port := s.Addr()
	t.Setenv("API_HOST", host)
	t.Setenv("API_PORT", port)
	var ctx context.Context
	appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = appengine.NewContext(r)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	return ctx
}

// bothPaths runs f once with a Middleware context and once with a bridge
// context, each against a fresh server.
func bothPaths(t *testing.T, f func(t *testing.T, s *Server, ctx context.Context)) {
	bothPathsWith(t, nil, f)
}

// bothPathsWith is bothPaths for servers started with the options opts
// returns (nil opts: the defaults).
func bothPathsWith(t *testing.T, opts func(t *testing.T) *Options, f func(t *testing.T, s *Server, ctx context.Context)) {
	start := func(t *testing.T) *Server {
		if opts == nil {
			return newTestServer(t)
		}
		s, err := NewServerOptions(opts(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	t.Run("middleware", func(t *testing.T) {
		s := start(t)
		f(t, s, middlewareContext(t, s))
	})
	t.Run("bridge", func(t *testing.T) {
		s := start(t)
		f(t, s, bridgeContext(t, s))
	})
}

// setBridgeHeaders sets the headers App Engine's clients send with every
// service bridge call.
func setBridgeHeaders(h http.Header) {
	h.Set("X-Google-RPC-Service-Endpoint", "app-engine-apis")
	h.Set("X-Google-RPC-Service-Method", "/VMRemoteAPI.CallRemoteAPI")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Google-RPC-Service-Deadline", "60")
}
