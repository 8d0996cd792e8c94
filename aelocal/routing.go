package aelocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
)

// How a request's App Engine calls reach a Server without environment
// variables.
//
// The appengine client (v2, and v1 since 1.6.8) sends a call over HTTP to
// API_HOST:API_PORT unless the context names another host and port; that is
// how aetest's Instance.NewRequest points each request at its own
// dev_appserver. Only the HTTP path attaches the current datastore
// transaction to a call: a call function installed with
// appengine.WithAPICallFunc takes the call before that, so in-process
// calls would lose their transaction.
//
// aelocal therefore routes a request as aetest does: its context names the
// server's loopback address, and the calls travel over the real bridge,
// transactions included. The context keys for host and port are unexported,
// so aelocal learns them once per client by running one call with a
// context that records the keys the client asks for and stops the call
// before anything is sent. TestRoutingCanary fails if a future client
// stops routing this way; until then Route returns an error and Middleware
// serves calls in-process but refuses transactions, loudly.

// APICallFunc is the signature of appengine.APICall, the same in
// google.golang.org/appengine/v2 and in v1, and of Server.Call.
type APICallFunc = func(ctx context.Context, service, method string, in, out gproto.Message) error

// routeKeys are a client's context keys for the API host and port.
type routeKeys struct{ host, port any }

var (
	routeMu    sync.Mutex
	routeCache = map[uintptr]routeResult{} // by the client's APICall function
)

type routeResult struct {
	keys routeKeys
	err  error
}

// keysFor returns the routing keys of the client whose appengine.APICall is
// apiCall, probing it the first time.
func keysFor(apiCall APICallFunc) (routeKeys, error) {
	id := reflect.ValueOf(apiCall).Pointer()
	routeMu.Lock()
	defer routeMu.Unlock()
	r, ok := routeCache[id]
	if !ok {
		r.keys, r.err = probeRouteKeys(apiCall)
		routeCache[id] = r
	}
	return r.keys, r.err
}

// keyProbe is a context that records the client's own context keys of a
// string type (the host and port overrides are the only ones) and stops
// the call with a panic once it has both.
type keyProbe struct {
	deadline time.Time
	keys     []any
}

type probeDone struct{}

func (p *keyProbe) Deadline() (time.Time, bool) { return p.deadline, true }
func (p *keyProbe) Done() <-chan struct{}       { return nil }
func (p *keyProbe) Err() error                  { return nil }

func (p *keyProbe) Value(key any) any {
	t := reflect.TypeOf(key)
	if t != nil && t.Kind() == reflect.String &&
		strings.HasPrefix(t.PkgPath(), "google.golang.org/appengine") && strings.HasSuffix(t.PkgPath(), "/internal") {
		p.keys = append(p.keys, key)
		if len(p.keys) == 2 {
			panic(probeDone{})
		}
	}
	return nil
}

func probeRouteKeys(apiCall APICallFunc) (keys routeKeys, err error) {
	in, err := newMsg("appengine.base.v2.VoidProto")
	if err != nil {
		return keys, err
	}
	out, _ := newMsg("appengine.base.v2.VoidProto")
	// Should a future client send the call anyway, it names no real
	// service, and the deadline bounds it.
	p := &keyProbe{deadline: time.Now().Add(time.Second)}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(probeDone); !ok {
					panic(r)
				}
			}
		}()
		err = apiCall(p, "aelocal_probe", "RouteKeys", protoV1(in), protoV1(out))
	}()
	if len(p.keys) != 2 {
		return keys, fmt.Errorf("the appengine client did not ask its context for an API host and port (call result: %v)", err)
	}
	// apiURL asks for the host, then the port; the keys' descriptions say
	// so too, which we check where they are there to check.
	keys = routeKeys{host: p.keys[0], port: p.keys[1]}
	h, hok := keys.host.(fmt.Stringer)
	pt, pok := keys.port.(fmt.Stringer)
	if hok && pok && strings.Contains(h.String(), "PORT") && strings.Contains(pt.String(), "HOST") {
		keys.host, keys.port = keys.port, keys.host
	}
	return keys, nil
}

// Route returns a copy of ctx whose App Engine API calls, made with the
// client whose appengine.APICall function is apiCall, go to s over its
// HTTP bridge, with their transactions, as with aetest. It works with
// google.golang.org/appengine/v2 and with v1 from 1.6.8 on, whose package
// aelocal does not import:
//
//	ctx, err := srv.Route(ctx, appengine.APICall) // v1's appengine
//
// ctx needs no App Engine request. Route fails if the client cannot be
// routed by context (v1 before 1.6.8); Call then serves calls in-process,
// without transactions.
func (s *Server) Route(ctx context.Context, apiCall APICallFunc) (context.Context, error) {
	keys, err := keysFor(apiCall)
	if err != nil {
		return nil, fmt.Errorf("aelocal: cannot route calls by context: %w", err)
	}
	host, port := s.Addr()
	return context.WithValue(context.WithValue(ctx, keys.host, host), keys.port, port), nil
}

// Middleware returns a handler that gives every request an App Engine
// context, as appengine.Middleware does, whose API calls s serves.
// appengine.NewContext, memcache, datastore (transactions included) and
// appengine/v2/log all work inside h.
//
// Routing is carried by each request's context, not by environment
// variables, so tests running in parallel against separate servers do not
// interfere. The calls travel over s's loopback bridge (see Route), so
// they behave exactly as an app's calls to App Engine do, and they fail
// once s is closed.
//
// A request that carries the cookie of the login page user.LoginURL points
// at, and no X-AppEngine-User-Email of its own, gets the headers of that
// user, as behind App Engine's front end. A response that sends a blob
// (blobstore.Send) carries the blob, as from App Engine's front end.
func (s *Server) Middleware(h http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, err := s.Route(r.Context(), appengine.APICall)
		if err != nil {
			// Serve the calls in-process, and make transactions fail
			// rather than run without isolation.
			ctx = appengine.WithAPICallFunc(r.Context(), s.inProcess(err))
		}
		h.ServeHTTP(w, r.WithContext(ctx))
	})
	mw := appengine.Middleware(inner)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveWithBlobs(mw, w, s.withLoginHeaders(r)) // the user the login page signed in; blobstore.Send (blobstore_upload.go)
	})
}

// NewRequest is like httptest.NewRequest, and the request's context is
// already an App Engine context whose API calls s serves, as inside
// Middleware. Use appengine.NewContext(req) to get it.
func (s *Server) NewRequest(method, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	var ctxReq *http.Request
	s.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		ctxReq = r
	})).ServeHTTP(httptest.NewRecorder(), req)
	return ctxReq
}

// errNoTransactions is why calls installed with WithAPICallFunc cannot run
// transactions.
var errNoTransactions = errors.New("a call function installed with appengine.WithAPICallFunc never sees the transaction of a call, so it cannot serve transactions")

// Call serves one API call in-process, without HTTP. Its signature is that
// of appengine.APICallFunc in google.golang.org/appengine/v2 and in v1, so
// either client's calls can be handed to s:
//
//	ctx = appengine.WithAPICallFunc(ctx, srv.Call)
//
// The client hands such a call over before it attaches the current
// datastore transaction, so Call refuses datastore_v3.BeginTransaction
// with an error instead of running transactions without isolation; use
// Route (or Middleware, or the bridge) for code that uses transactions.
// Errors of services have appengine/v2's own error type.
func (s *Server) Call(ctx context.Context, service, method string, in, out gproto.Message) error {
	return s.inProcess(errNoTransactions)(ctx, service, method, in, out)
}

// inProcess returns a call function that serves calls in-process and
// refuses transactions, giving why.
func (s *Server) inProcess(why error) APICallFunc {
	return func(ctx context.Context, service, method string, in, out gproto.Message) error {
		if service == "datastore_v3" && method == "BeginTransaction" {
			return fmt.Errorf("aelocal: transactions cannot be served in-process: %v; route the context with Server.Route, or use the HTTP bridge (API_HOST and API_PORT) or cmd/aelocal under aetest", why)
		}
		return s.apiCall(ctx, service, method, in, out)
	}
}

// apiCall serves one call made through appengine.WithAPICallFunc. The
// request is encoded and decoded exactly as on the bridge, so both paths
// share one implementation.
func (s *Server) apiCall(ctx context.Context, service, method string, in, out gproto.Message) error {
	// appengine/v2 hands the call over before it looks at the context; on
	// its HTTP path a call on a finished context never leaves the process.
	if err := ctx.Err(); err != nil {
		return err
	}
	req, err := gproto.Marshal(in)
	if err != nil {
		return err
	}
	resp, release, err := s.call(ctx, service, method, req)
	if err != nil {
		var se *serviceError
		if errors.As(err, &se) {
			return newAPIError(service, se.code, se.detail)
		}
		return err
	}
	defer release()
	return gproto.Unmarshal(resp, out)
}

// protoV1 adapts a message for the older golang/protobuf interface the
// clients take.
func protoV1(p pmsg) gproto.Message { return gproto.MessageV1(p.m.Interface()) }
