package aelocal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// DefaultAppID is the application ID NewServer puts into GAE_APPLICATION
// when the variable is unset.
const DefaultAppID = "dev~aelocal"

// maxRequestBytes bounds one bridge request body. App Engine's own limit for
// an API call is far lower; this only keeps a hostile client from making the
// server buffer without end.
const maxRequestBytes = 64 << 20

// maxResponseBytes bounds one bridge response: past it a call fails with
// RESPONSE_TOO_LARGE, without the response being built where the service
// can tell in advance (datastore_v3.Get, see datastore_get.go). 50 MiB is
// the largest datastore Get answer known to pass in production; memcache
// batches (32 MB), urlfetch responses (32 MiB) and query batches stay
// below it.
const maxResponseBytes = 50 << 20

// defaultAnswerBudget is the encoded answers held at once, across calls,
// from the moment one is encoded until it is sent: two of the largest, or
// many small ones. A call waits for its share, as request bodies do for
// theirs (defaultBodyBudget).
const defaultAnswerBudget = 2 * maxResponseBytes

// Server is a local App Engine API server: memcache and datastore_v3 behind
// the HTTP service bridge that second-generation runtimes use.
//
// A Server is safe for concurrent use. Start one with NewServer and stop it
// with Close, as with httptest.Server.
type Server struct {
	ln   net.Listener
	http *http.Server
	url  string

	// The front door (frontdoor.go).
	listenIP     net.IP // the address listened on, unless unspecified
	allowedHosts []string
	budget       *byteBudget
	answers      *byteBudget // encoded answers not yet sent
	limiter      *connLimiter
	bodyTimeout  time.Duration

	mu        sync.Mutex
	stats     map[string]int64
	failNext  map[string]int           // "service.Method" or "service." -> calls left to fail
	latency   map[string]time.Duration // "service" or "service.Method" -> delay
	clockSkew time.Duration            // FastForward total
	stoppedAt time.Time                // set by SetTime: the clock stands still

	memcache  *memcacheService
	datastore *datastoreService

	// The other bundled services (services.go).
	taskqueue *taskqueueService
	mail      *mailService
	users     *userService
	fetch     *urlfetchService
	search    *searchService
	appURL    string    // Options.AppURL
	frontAddr string    // Options.FrontAddr
	front     *frontEnd // the app's front end, if any; under mu

	blobstore *blobstoreService // blobstore.go
	logs      *logService       // logservice.go
	system    *systemService    // system.go

	rpcs    *rpcLog  // the latest calls, for the console
	console *console // the pages at the server's root

	cloud *cloudDatastore // the Cloud Datastore API (clouddatastore.go); nil if not served
	// cloudApp is GAE_APPLICATION when the server started: the app whose
	// project Cloud Datastore API requests name (clouddatastore_convert.go).
	cloudApp string
}

// NewServer starts a Server on 127.0.0.1 at a free port.
//
// If GAE_APPLICATION is unset, NewServer sets it to DefaultAppID, because
// appengine/v2 reads the application ID from there and refuses to build
// keys without one.
func NewServer() (*Server, error) {
	return NewServerOptions(nil)
}

// Serve starts a Server on a listener the caller opened, for example on
// 127.0.0.1:10001, App Engine's default API port. The Server owns ln from
// now on and closes it in Close.
func Serve(ln net.Listener) (*Server, error) {
	return serve(ln, &Options{})
}

// serve starts a Server on ln configured by o. With a DatastorePath it
// loads the datastore first: until then connections wait unanswered.
func serve(ln net.Listener, o *Options) (*Server, error) {
	if os.Getenv("GAE_APPLICATION") == "" {
		os.Setenv("GAE_APPLICATION", DefaultAppID)
	}
	s := newServer()
	if err := s.datastore.indexes.configure(o); err != nil {
		ln.Close()
		return nil, err
	}
	if err := s.configureServices(o); err != nil {
		ln.Close()
		return nil, err
	}
	if o.MemcacheLimit > 0 {
		s.SetMemcacheLimit(o.MemcacheLimit)
	}
	if o.TxHistoryLimit > 0 {
		s.datastore.historyLimit = o.TxHistoryLimit // nothing is served yet
	}
	s.datastore.legacyEntityGroups = o.LegacyEntityGroups
	if err := s.console.configure(o); err != nil {
		ln.Close()
		return nil, err
	}
	// Opened last of what can fail before serving: a start that fails
	// after this must close the file, or it stays locked.
	if o.DatastorePath != "" {
		if _, err := openDatastoreFile(s.datastore, o.DatastorePath); err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		s.listenIP = a.IP
	}
	s.allowedHosts = normalizeHosts(o.AllowedHosts)
	s.budget = newByteBudget(max(cmpOr(o.bodyBudget, defaultBodyBudget), maxRequestBytes))
	s.answers = newByteBudget(max(cmpOr(o.answerBudget, defaultAnswerBudget), maxResponseBytes))
	s.bodyTimeout = cmpOr(o.bodyTimeout, bodyReadTimeout)
	s.limiter = newConnLimiter(ln, cmpOr(o.maxConns, defaultMaxConns))
	// The front door (frontdoor.go) checks every request first and sends
	// bridge calls, on any path, to the bridge; these are the pages.
	mux := http.NewServeMux()
	mux.HandleFunc("/rpc_http", s.serveBridgePath)
	mux.Handle("/", s.console)
	mux.HandleFunc("/_ah/login", s.serveLogin)
	mux.HandleFunc("/_ah/logout", s.serveLogout)
	mux.HandleFunc(uploadPath, serveUploadWithoutFront)
	mux.HandleFunc(imgPath, s.serveImage)
	s.http = &http.Server{
		Handler:           s.frontDoor(mux),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       cmpOr(o.idleTimeout, defaultIdleTimeout),
		ConnState:         s.limiter.connState,
	}
	go s.http.Serve(s.limiter)
	if err := s.startCloudDatastore(o); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startServices(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// cmpOr returns v, or dflt if v is zero.
func cmpOr[T comparable](v, dflt T) T {
	var zero T
	if v == zero {
		return dflt
	}
	return v
}

func newServer() *Server {
	s := &Server{
		stats:    make(map[string]int64),
		failNext: make(map[string]int),
		latency:  make(map[string]time.Duration),
		rpcs:     newRPCLog(),
	}
	s.budget = newByteBudget(defaultBodyBudget)
	s.answers = newByteBudget(defaultAnswerBudget)
	s.bodyTimeout = bodyReadTimeout
	s.console = newConsole(s)
	s.memcache = newMemcacheService(s.Now)
	// Idle transactions and cursors expire by the server's clock, so that
	// FastForward reaches them too.
	s.datastore = newDatastoreService(s.Now)
	// Transaction and cursor handles start at a random point, so that a
	// handle a client kept from before a restart names nothing in the new
	// server, rather than another client's transaction.
	s.datastore.handle = rand.Uint64() >> 2
	s.initServices()
	return s
}

// URL returns the base URL, http://127.0.0.1:PORT. POST URL()+"/rpc_http"
// answers as App Engine's service bridge does; URL()+"/" is the console.
func (s *Server) URL() string { return s.url }

// Addr returns the host and port the server listens on. An unchanged app
// reaches the server with API_HOST and API_PORT set to these.
func (s *Server) Addr() (host, port string) {
	host, port, _ = net.SplitHostPort(s.ln.Addr().String())
	return host, port
}

// Close stops the server at once: it closes the listener and every
// connection. Calls made through Middleware, NewRequest and Route fail from
// then on; calls handed over with Call are still served, except that with a
// DatastorePath the file is closed, so their writes fail. Writes already
// answered are on disk.
func (s *Server) Close() error {
	err := s.http.Close()
	s.stopCloudDatastore(nil)
	s.stopServices()
	if j := s.datastore.journal; j != nil {
		if jerr := j.close(); err == nil {
			err = jerr
		}
	}
	return err
}

// Shutdown stops the server gracefully: it stops accepting calls, waits
// for the calls in progress to be answered (or for ctx to end), then
// closes the datastore file, if any. As http.Server.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.stopCloudDatastore(ctx)
	s.stopServices()
	if j := s.datastore.journal; j != nil {
		if jerr := j.close(); err == nil {
			err = jerr
		}
	}
	return err
}

// Now returns the server's clock: the real time plus every FastForward,
// or, after SetTime, the time set plus every FastForward since. Memcache
// expiry and the expiry of idle datastore transactions and cursors are
// judged by this clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stoppedAt.IsZero() {
		return s.stoppedAt.Add(s.clockSkew)
	}
	return time.Now().Add(s.clockSkew)
}

// FastForward moves the server's clock forward by d, so memcache items
// expire and tasks come due without the test waiting for them.
func (s *Server) FastForward(d time.Duration) {
	s.mu.Lock()
	s.clockSkew += d
	s.mu.Unlock()
	s.taskqueue.notify()
}

// SetTime sets the server's clock to t and stops it there: from then on
// only FastForward moves it. A test that checks expiry to the second sets
// the time first, so that real time passing on a busy machine cannot move
// the clock past the moment it checks. The zero t makes the clock follow
// real time again.
func (s *Server) SetTime(t time.Time) {
	s.mu.Lock()
	s.stoppedAt, s.clockSkew = t, 0
	s.mu.Unlock()
	s.taskqueue.notify()
}

// OtherCalls is the Stats key that counts calls of methods aelocal does not
// serve, all together: a client cannot grow the statistics with names of
// its choosing.
const OtherCalls = "other"

// Stats returns the number of RPCs served since the server started or
// since the last ResetStats, keyed "service.Method" as the client names
// them: "memcache.Get", "memcache.Set", "datastore_v3.Put",
// "datastore_v3.RunQuery", and so on. Calls that failed, including
// injected failures, count too: they are RPCs the app made. Calls of
// methods that aelocal does not implement count under OtherCalls.
func (s *Server) Stats() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// ResetStats sets every RPC count back to zero.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = make(map[string]int64)
	s.rpcs.resetSince(time.Now())
}

// FailNext makes the next n calls of service.method answer with a service
// error (an ApplicationError, as a failing App Engine backend sends: code
// UNSPECIFIED_ERROR for memcache, INTERNAL_ERROR for the datastore and
// mail, the service's transient or unknown error elsewhere).
// Method "" means every method of the service. n <= 0 cancels the
// injection.
func (s *Server) FailNext(service, method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := service + "." + method
	if n <= 0 {
		delete(s.failNext, key)
		return
	}
	s.failNext[key] = n
}

// SetLatency makes every call of service wait d before it is served.
// service is "memcache" or "datastore_v3"; it may also name one method,
// as "datastore_v3.Put", which then takes precedence over the service-wide
// value. d <= 0 removes the delay. A caller whose context ends first gets
// its context's error.
func (s *Server) SetLatency(service string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.latency, service)
		return
	}
	s.latency[service] = d
}

// FlushMemcache empties memcache, as if App Engine evicted everything.
func (s *Server) FlushMemcache() { s.memcache.flush() }

// SetMemcacheLimit sets the memory cap of memcache in bytes. An item counts
// its namespace, key and value and a fixed overhead for its bookkeeping
// (about 256 bytes), so the cap bounds the memory memcache really holds.
// Past it the least recently used items are evicted. The default is
// DefaultMemcacheLimit.
func (s *Server) SetMemcacheLimit(bytes int64) { s.memcache.setLimit(bytes) }

// methodFunc serves one method: in is the decoded request, out the empty
// response to fill. It returns a *serviceError for application errors.
type methodFunc func(s *Server, in, out pmsg) error

type methodSpec struct {
	req, resp string // full message names in the protobuf registry
	fn        methodFunc
	ctxFn     func(ctx context.Context, s *Server, in, out pmsg) error // instead of fn, for a method that needs the call's context
}

var methods = map[string]methodSpec{}

// register adds a method to the dispatch table; services call it from init.
func register(service, method, req, resp string, fn methodFunc) {
	methods[service+"."+method] = methodSpec{req: req, resp: resp, fn: fn}
}

// registerCtx adds a method that reads the call's context (registerCtx's
// callers: logservice.go).
func registerCtx(service, method, req, resp string, fn func(ctx context.Context, s *Server, in, out pmsg) error) {
	methods[service+"."+method] = methodSpec{req: req, resp: resp, ctxFn: fn}
}

// Implemented returns the "service.Method" names aelocal serves, sorted.
func Implemented() []string {
	out := make([]string, 0, len(methods))
	for k := range methods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// serviceError is an application error of one service, sent on the bridge
// as remote_api ApplicationError; the client turns it into an APIError.
type serviceError struct {
	code   int32
	detail string
}

func (e *serviceError) Error() string { return fmt.Sprintf("API error %d: %s", e.code, e.detail) }

func errorf(code int32, format string, args ...any) error {
	return &serviceError{code: code, detail: fmt.Sprintf(format, args...)}
}

// rpcError is a failure of the bridge itself (remote_api RpcError).
type rpcError struct {
	code   int32
	detail string
}

func (e *rpcError) Error() string { return e.detail }

// RpcError codes of remote_api.
const (
	rpcUnknown          = 0
	rpcCallNotFound     = 1
	rpcParseError       = 2
	rpcRequestTooLarge  = 5
	rpcResponseTooLarge = 9
	rpcCancelled        = 10
	rpcDeadlineExceeded = 12
)

// failureCode is the application error code an injected failure uses.
func failureCode(service string) int32 {
	switch service {
	case "datastore_v3":
		return 3 // INTERNAL_ERROR
	}
	if code, ok := serviceFailureCodes[service]; ok {
		return code
	}
	return 1 // memcache UNSPECIFIED_ERROR, and a generic code elsewhere
}

// maxUnknownName bounds the name of a method aelocal does not serve, as it
// is logged and quoted.
const maxUnknownName = 200

// call serves one API call given its encoded request. The caller must call
// release once it has sent or decoded the answer resp: the answer counts
// against the server's budget of answers until then.
func (s *Server) call(ctx context.Context, service, method string, reqBytes []byte) (resp []byte, release func(), err error) {
	resp, share, err := s.serveCall(ctx, service, method, reqBytes)
	if err != nil {
		return nil, nil, err
	}
	return resp, func() { s.answers.release(share) }, nil
}

// serveCall is call; share is what the answer holds of the answer budget.
func (s *Server) serveCall(ctx context.Context, service, method string, reqBytes []byte) (resp []byte, share int64, err error) {
	name := service + "." + method
	spec, ok := methods[name]
	if !ok && len(name) > maxUnknownName {
		// A name the client made up goes into the RPC log and the error
		// message: it must not bring its megabytes with it.
		name = strings.ToValidUTF8(name[:maxUnknownName], "?") + "..."
	}
	defer s.rpcs.record(name, time.Now(), len(reqBytes), &err)

	if err := s.admitCall(ctx, service, name, ok); err != nil {
		return nil, 0, err
	}

	in, err := newMsg(spec.req)
	if err != nil {
		return nil, 0, &rpcError{code: rpcUnknown, detail: err.Error()}
	}
	if err := proto.Unmarshal(reqBytes, in.m.Interface()); err != nil {
		return nil, 0, &rpcError{code: rpcParseError, detail: fmt.Sprintf("cannot parse %s request: %v", name, err)}
	}
	out, err := newMsg(spec.resp)
	if err != nil {
		return nil, 0, &rpcError{code: rpcUnknown, detail: err.Error()}
	}
	defer func() {
		// A request can be well-formed protobuf yet absurd in ways a
		// service did not foresee; that must cost one failed call, never
		// the server.
		if p := recover(); p != nil {
			resp, err = nil, &rpcError{code: rpcUnknown, detail: fmt.Sprintf("internal error serving %s: %v", name, p)}
			if share != 0 {
				s.answers.release(share)
				share = 0
			}
		}
	}()
	if spec.ctxFn != nil {
		err = spec.ctxFn(ctx, s, in, out)
	} else {
		err = spec.fn(s, in, out)
	}
	if err != nil {
		return nil, 0, err
	}
	// The answer's size is known before it is encoded (a Get's holds
	// stored entities, not copies), so a call past the bound costs
	// nothing, and one within it waits for its share of the budget.
	size := out.Size()
	if size > maxResponseBytes {
		return nil, 0, &rpcError{code: rpcResponseTooLarge, detail: fmt.Sprintf("The response from API call %s() was too large: %d bytes; aelocal answers at most %d", name, size, maxResponseBytes)}
	}
	share = int64(size)
	if err := s.answers.acquire(ctx, share); err != nil {
		return nil, 0, err
	}
	// Stored entities are in answers as their bytes (dsEntity.answer),
	// which the check of required fields would see as messages missing
	// their key; the bytes were checked when they were stored.
	resp, err = proto.MarshalOptions{Deterministic: true, AllowPartial: true}.Marshal(out.m.Interface())
	if err != nil {
		s.answers.release(share)
		return nil, 0, &rpcError{code: rpcUnknown, detail: fmt.Sprintf("cannot encode %s response: %v", name, err)}
	}
	return resp, share, nil
}

// admitCall counts a call of name (a method of service, known if ok) in
// the Stats, then applies what SetLatency and FailNext asked for it: it
// returns the error the call fails with before it is served, if any. The
// bridge and the Cloud Datastore API (clouddatastore.go) both call it.
func (s *Server) admitCall(ctx context.Context, service, name string, ok bool) error {
	s.mu.Lock()
	if ok {
		s.stats[name]++
	} else {
		s.stats[OtherCalls]++
	}
	delay, ok2 := s.latency[name]
	if !ok2 {
		delay = s.latency[service]
	}
	inject := false
	for _, k := range []string{name, service + "."} {
		if n := s.failNext[k]; n > 0 && ok {
			inject = true
			if n == 1 {
				delete(s.failNext, k)
			} else {
				s.failNext[k] = n - 1
			}
			break
		}
	}
	s.mu.Unlock()

	if !ok {
		return &rpcError{code: rpcCallNotFound, detail: "aelocal does not serve " + name + notServed(service)}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if inject {
		return &serviceError{code: failureCode(service), detail: "aelocal: injected failure of " + name}
	}
	return nil
}

// serveBridge answers a bridge call (a POST with the bridge headers, on any
// path) with a remote_api.Response, always with HTTP 200 as App Engine's
// bridge does: errors travel inside the response.
func (s *Server) serveBridge(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "aelocal: POST a remote_api.Request here", http.StatusMethodNotAllowed)
		return
	}
	resp, _ := newMsg("remote_api.v2.Response")
	var out []byte
	body, release, rerr := s.readBridgeBody(w, r)
	if rerr != nil {
		setRPCError(resp, rerr)
	} else {
		var sent func()
		out, sent = s.bridgeCall(r, body, resp)
		// The request is decoded (copied) and served: its bytes go back to
		// the budget before the answer is sent, which the client may see
		// before this handler returns.
		release()
		if sent != nil {
			defer sent()
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if out != nil {
		// A remote_api.Response whose only field is response (1): its
		// header, then the service's answer as it is, rather than a copy
		// of the answer inside a second buffer. A client that stops
		// reading must not keep the answer's share of the budget.
		rc := http.NewResponseController(w)
		deadline := rc.SetWriteDeadline(time.Now().Add(s.bodyTimeout)) == nil
		hdr := protowire.AppendTag(nil, 1, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(len(out)))
		w.Header().Set("Content-Length", strconv.Itoa(len(hdr)+len(out)))
		w.Write(hdr)
		if _, err := w.Write(out); err == nil && deadline {
			rc.Flush()
			rc.SetWriteDeadline(time.Time{}) // the connection's next request has its own
		}
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		http.Error(w, "aelocal: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(b)
}

// bridgeCall serves the call in body. It returns the service's encoded
// answer and the function that releases its share of the answer budget,
// or nil with the error set in resp.
func (s *Server) bridgeCall(r *http.Request, body []byte, resp pmsg) ([]byte, func()) {
	req, _ := newMsg("remote_api.v2.Request")
	if err := proto.Unmarshal(body, req.m.Interface()); err != nil {
		setRPCError(resp, &rpcError{code: rpcParseError, detail: "cannot parse remote_api.Request: " + err.Error()})
		return nil, nil
	}
	ctx := r.Context()
	// A deadline of 0 or less has passed: the client computes it from its
	// context's deadline just before it sends, and may send a negative one
	// when that deadline passed in between. (Its own cancel may then miss
	// the request, so ignoring such a deadline can keep the call waiting
	// on an injected latency without end.)
	if d, err := strconv.ParseFloat(r.Header.Get("X-Google-RPC-Service-Deadline"), 64); err == nil && !math.IsNaN(d) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(max(d, 0)*float64(time.Second)))
		defer cancel()
	}
	ctx = withAPITicket(ctx, req.Str("request_id")) // which request's app log lines a logservice.Flush carries
	out, release, err := s.call(ctx, req.Str("service_name"), req.Str("method"), req.Bytes("request"))
	var se *serviceError
	var re *rpcError
	switch {
	case err == nil:
		if out == nil {
			out = []byte{} // an empty answer is still an answer
		}
		return out, release
	case errors.As(err, &se):
		ae := resp.Mutable("application_error")
		ae.Set("code", se.code)
		ae.Set("detail", se.detail)
	case errors.As(err, &re):
		setRPCError(resp, re)
	case errors.Is(err, context.DeadlineExceeded):
		setRPCError(resp, &rpcError{code: rpcDeadlineExceeded, detail: "deadline exceeded"})
	case errors.Is(err, context.Canceled):
		setRPCError(resp, &rpcError{code: rpcCancelled, detail: "call cancelled"})
	default:
		setRPCError(resp, &rpcError{code: rpcUnknown, detail: err.Error()})
	}
	return nil, nil
}

func setRPCError(resp pmsg, e *rpcError) {
	re := resp.Mutable("rpc_error")
	re.Set("code", e.code)
	re.Set("detail", e.Error())
}
