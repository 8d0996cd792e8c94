package aelocal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// The Cloud Datastore API (google.datastore.v1 over gRPC), served on a port
// of its own over the same datastore as datastore_v3, as production serves
// both APIs from one Firestore in Datastore mode database. An unchanged
// cloud.google.com/go/datastore client reaches it with
// DATASTORE_EMULATOR_HOST set to CloudDatastoreAddr, as it reaches Google's
// emulator.
//
// The API is a thin adapter (clouddatastore_*.go): it converts requests to
// the keys and EntityProtos the engine stores (clouddatastore_convert.go)
// and calls the engine datastore_v3 calls, so both APIs share entities,
// IDs, transactions, the composite-index record, persistence, Stats and
// the RPC log, which name its calls "cloud_datastore_v1.Method" (the
// service name of the Python SDK's v1 stub).
//
// The port also answers plain HTTP as Google's emulator does, for the
// scripts written against it: GET / answers "Ok", POST /reset empties the
// datastore, POST /shutdown asks the process to end (ShutdownRequested).
// A connection is gRPC if it opens with the HTTP/2 preface (gRPC clients
// speak HTTP/2 from the first byte), HTTP otherwise.

// cloudService names the Cloud Datastore API in Stats and the RPC log.
const cloudService = "cloud_datastore_v1"

// cloudMethods are the Stats keys of the API's methods.
var cloudMethods = map[string]bool{}

func init() {
	for _, m := range []string{"Lookup", "RunQuery", "RunAggregationQuery", "BeginTransaction", "Commit", "Rollback", "AllocateIds", "ReserveIds"} {
		cloudMethods[cloudService+"."+m] = true
	}
	// FailNext of the API answers INTERNAL, as of datastore_v3.
	serviceFailureCodes[cloudService] = dsInternalError
}

// Bounds of the Cloud Datastore API's port.
const (
	// maxCloudRequestBytes bounds one gRPC request: production's limit is
	// 10 MiB; the margin lets a request just over it fail with
	// production's message rather than the transport's.
	maxCloudRequestBytes = 12 << 20
	maxCloudStreams      = 16 // concurrent calls per connection; the client queues more
	sniffTimeout         = 10 * time.Second
	// maxCloudCalls bounds the calls in flight on the port, so that the
	// requests held at once stay below maxCloudCalls*maxCloudRequestBytes
	// (768 MiB): gRPC reads a request whole before its handler runs, and
	// has no budget across connections as the bridge has (frontdoor.go).
	// A call past it fails at once with RESOURCE_EXHAUSTED: gRPC cannot
	// make it wait without stalling the other calls of its connection.
	maxCloudCalls = 64
)

// cloudDatastore is the API's listener and servers.
type cloudDatastore struct {
	ln       net.Listener
	grpc     *grpc.Server
	http     *http.Server
	grpcLn   *chanListener
	httpLn   *chanListener
	shutdown chan struct{} // closed by POST /shutdown
	once     sync.Once
	stopOnce sync.Once

	// slots holds a token per call in flight (maxCloudCalls).
	slots chan struct{}

	// failed holds the handles of transactions whose commit failed, so
	// that the client's Rollback of one, which it always sends after a
	// failed commit before it retries, succeeds as in production.
	mu     sync.Mutex
	failed map[uint64]bool
	order  []uint64 // failed's handles, oldest first, for its bound
}

// maxFailedTx bounds cloudDatastore.failed.
const maxFailedTx = 1000

// noteFailed remembers that the commit of transaction h failed.
func (c *cloudDatastore) noteFailed(h uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = make(map[uint64]bool)
	}
	if len(c.order) >= maxFailedTx {
		delete(c.failed, c.order[0])
		c.order = c.order[1:]
	}
	c.failed[h] = true
	c.order = append(c.order, h)
}

// takeFailed reports whether the commit of transaction h failed, and
// forgets it.
func (c *cloudDatastore) takeFailed(h uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.failed[h] {
		return false
	}
	delete(c.failed, h)
	return true
}

// startCloudDatastore starts the API if o asks for it.
func (s *Server) startCloudDatastore(o *Options) error {
	s.cloudApp = getenvApp()
	if o.CloudDatastoreAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.CloudDatastoreAddr)
	if err != nil {
		return fmt.Errorf("aelocal: Cloud Datastore API: listen: %w", err)
	}
	c := &cloudDatastore{
		// Connections are capped as on the main port (frontdoor.go): at
		// the cap, a new one waits until one closes.
		ln:       newConnLimiter(ln, defaultMaxConns),
		grpcLn:   newChanListener(ln.Addr()),
		httpLn:   newChanListener(ln.Addr()),
		shutdown: make(chan struct{}),
		slots:    make(chan struct{}, cmpOr(o.cloudCalls, maxCloudCalls)),
	}
	c.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxCloudRequestBytes),
		grpc.MaxSendMsgSize(maxResponseBytes),
		grpc.MaxConcurrentStreams(maxCloudStreams),
		// The Cloud client pings an idle connection every minute
		// (PermitWithoutStream); gRPC's default policy would answer
		// that with GOAWAY "too_many_pings" and break it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.InTapHandle(c.admitStream),
		grpc.StatsHandler(cloudSlotRelease{}),
	)
	pb.RegisterDatastoreServer(c.grpc, &cloudAPI{s: s})
	c.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveCloudHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       defaultIdleTimeout,
	}
	s.cloud = c
	go c.grpc.Serve(c.grpcLn)
	go c.http.Serve(c.httpLn)
	go c.accept()
	return nil
}

// stopCloudDatastore stops the API: gracefully while ctx lasts, at once
// if ctx is nil or ends.
func (s *Server) stopCloudDatastore(ctx context.Context) {
	c := s.cloud
	if c == nil {
		return
	}
	c.stopOnce.Do(func() {
		c.ln.Close()
		c.grpcLn.Close()
		c.httpLn.Close()
		if ctx == nil {
			c.grpc.Stop()
			c.http.Close()
			return
		}
		done := make(chan struct{})
		go func() {
			c.grpc.GracefulStop()
			close(done)
		}()
		c.http.Shutdown(ctx)
		select {
		case <-done:
		case <-ctx.Done():
			c.grpc.Stop()
		}
	})
}

// CloudDatastoreAddr returns the host:port of the Cloud Datastore API
// (Options.CloudDatastoreAddr), the value of DATASTORE_EMULATOR_HOST for
// a cloud.google.com/go/datastore client; "" if the server does not serve
// it.
func (s *Server) CloudDatastoreAddr() string {
	if s.cloud == nil {
		return ""
	}
	return s.cloud.ln.Addr().String()
}

// CloudProjectID returns the Cloud project ID of the server's app, the
// value of DATASTORE_PROJECT_ID with which a Cloud Datastore client
// shares the datastore_v3 clients' data: GAE_APPLICATION (as the server
// started) without its partition prefix, "aelocal" for DefaultAppID.
func (s *Server) CloudProjectID() string { return projectOf(s.cloudApp) }

// ShutdownRequested is closed once a client POSTs /shutdown to the Cloud
// Datastore API's port, as gcloud users script against Google's emulator.
// The server itself keeps serving: cmd/aelocal shuts down when it sees
// it, a program that embeds a Server decides for itself. Nil if the
// server does not serve the API.
func (s *Server) ShutdownRequested() <-chan struct{} {
	if s.cloud == nil {
		return nil
	}
	return s.cloud.shutdown
}

// cloudMethodPrefix starts the full method names of the API.
const cloudMethodPrefix = "/google.datastore.v1.Datastore/"

// cloudSlot is a call's token of cloudDatastore.slots, given back once.
type cloudSlot struct {
	once  sync.Once
	slots chan struct{}
}

type cloudSlotKey struct{}

// admitStream takes a token for a call of the API before gRPC reads its
// request, or refuses the call if every token is taken. Calls of other
// methods take none: gRPC answers them UNIMPLEMENTED without a handler.
func (c *cloudDatastore) admitStream(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !strings.HasPrefix(info.FullMethodName, cloudMethodPrefix) || !cloudMethods[cloudService+"."+strings.TrimPrefix(info.FullMethodName, cloudMethodPrefix)] {
		return ctx, nil
	}
	select {
	case c.slots <- struct{}{}:
		return context.WithValue(ctx, cloudSlotKey{}, &cloudSlot{slots: c.slots}), nil
	default:
		return nil, status.Errorf(codes.ResourceExhausted, "aelocal: %d Cloud Datastore calls are in flight, the most it serves at once; retry", cap(c.slots))
	}
}

// cloudSlotRelease gives a call's token back when the call ends, however
// it ends (gRPC reports the end of every call it began to handle).
type cloudSlotRelease struct{}

func (cloudSlotRelease) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (cloudSlotRelease) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (cloudSlotRelease) HandleConn(context.Context, stats.ConnStats) {}
func (cloudSlotRelease) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.End); !ok {
		return
	}
	if sl, ok := ctx.Value(cloudSlotKey{}).(*cloudSlot); ok {
		sl.once.Do(func() { <-sl.slots })
	}
}

// accept hands each connection to the gRPC or the HTTP server, by its
// first bytes.
func (c *cloudDatastore) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go c.route(conn)
	}
}

// http2Preface opens every HTTP/2 connection, and so every gRPC one.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

func (c *cloudDatastore) route(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(conn, len(http2Preface))
	// Read until the bytes are the whole preface or stop matching it, so
	// that a short HTTP request is routed as soon as it differs.
	var head []byte
	var err error
	for n := 1; n <= len(http2Preface); n = len(head) + 1 {
		head, err = br.Peek(max(n, br.Buffered()))
		if err != nil || !bytes.HasPrefix(http2Preface, head[:min(len(head), len(http2Preface))]) {
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	if len(head) == 0 {
		conn.Close()
		return
	}
	sc := &sniffedConn{Conn: conn, r: br}
	ln := c.httpLn
	if bytes.HasPrefix(head, http2Preface) {
		ln = c.grpcLn
	}
	if !ln.hand(sc) {
		conn.Close()
	}
}

// sniffedConn is a connection whose first bytes were read to route it.
type sniffedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *sniffedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed with routed connections.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives conn to the listener's server; false once it is closed.
func (l *chanListener) hand(conn net.Conn) bool {
	select {
	case l.conns <- conn:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// serveCloudHTTP answers the emulator's plain HTTP requests. A web page
// in the developer's browser can send a POST to loopback, so the state
// changing ones are refused from a browser: any request with an Origin or
// Sec-Fetch-Site header (browsers add them, curl and gcloud's scripts do
// not), or whose Host header is not a name of this server (DNS
// rebinding). GET changes nothing.
func (s *Server) serveCloudHTTP(w http.ResponseWriter, r *http.Request) {
	if code, msg := s.admit(r, false); code != 0 {
		http.Error(w, msg, code)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<10)
	switch r.URL.Path {
	case "/":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "aelocal: GET / answers Ok", http.StatusMethodNotAllowed)
			return
		}
		io.WriteString(w, "Ok\n")
		return
	case "/reset", "/shutdown":
	default:
		http.Error(w, "aelocal: this port serves the Cloud Datastore API over gRPC (DATASTORE_EMULATOR_HOST); over HTTP only GET /, POST /reset and POST /shutdown", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "aelocal: POST "+r.URL.Path+" (a GET changes nothing)", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
		http.Error(w, "aelocal: refused: "+r.URL.Path+" from a web page; POST it with curl or a script", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/reset":
		if err := s.datastore.replace(&dsImage{spaces: make(map[nsKey]*dsSpace), ids: newCounters()}); err != nil {
			http.Error(w, "aelocal: reset failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		d := s.datastore
		d.mu.Lock()
		d.writtenAt = d.now() // a read_time before the reset would read what it removed
		d.mu.Unlock()
		io.WriteString(w, "Resetting...\n")
	case "/shutdown":
		s.cloud.once.Do(func() { close(s.cloud.shutdown) })
		io.WriteString(w, "Shutting down server.\n")
	}
}

// cloudAPI implements pb.DatastoreServer over s.
type cloudAPI struct {
	pb.UnimplementedDatastoreServer
	s *Server
}

// cloudCall serves one call of method: it counts it, applies injected
// latency and failures, records it in the RPC log, and turns what fn
// returns, or a panic, into a gRPC status.
func (s *Server) cloudCall(ctx context.Context, method string, req proto.Message, fn func() error) (err error) {
	name := cloudService + "." + method
	defer s.rpcs.record(name, time.Now(), proto.Size(req), &err)
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "aelocal: internal error serving %s: %v", name, p)
		}
	}()
	if err := s.admitCall(ctx, cloudService, name, true); err != nil {
		return cloudStatus(err)
	}
	return cloudStatus(fn())
}

// cloudStatus converts an engine error into the gRPC status production
// answers with for it.
func cloudStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var se *serviceError
	var re *rpcError
	switch {
	case errors.As(err, &se):
		return status.Error(cloudCode(se.code), se.detail)
	case errors.As(err, &re):
		if re.code == rpcResponseTooLarge || re.code == rpcRequestTooLarge {
			return status.Error(codes.ResourceExhausted, re.detail)
		}
		return status.Error(codes.Internal, re.detail)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// cloudCode maps a datastore_v3 error code to the gRPC code Cloud
// Datastore answers with for the same failure.
func cloudCode(code int32) codes.Code {
	switch code {
	case dsBadRequest:
		return codes.InvalidArgument
	case dsConcurrentTransaction:
		return codes.Aborted
	case dsInternalError:
		return codes.Internal
	case 4: // NEED_INDEX
		return codes.FailedPrecondition
	case 5: // TIMEOUT
		return codes.DeadlineExceeded
	case 6: // PERMISSION_DENIED
		return codes.PermissionDenied
	case 7, 8, 9, 10: // BIGTABLE_ERROR, COMMITTED_BUT_STILL_APPLYING, CAPABILITY_DISABLED, TRY_ALTERNATE_BACKEND
		return codes.Unavailable
	case 11: // SAFE_TIME_TOO_OLD
		return codes.FailedPrecondition
	case 12: // RESOURCE_EXHAUSTED
		return codes.ResourceExhausted
	}
	return codes.Unknown
}

// cloudError is an error of the API with a gRPC code of its own, for the
// failures datastore_v3 has no code for (NOT_FOUND, ALREADY_EXISTS).
func cloudError(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, format, args...)
}

// getenvApp is the app ID of the server's own app.
func getenvApp() string {
	if app := os.Getenv("GAE_APPLICATION"); app != "" {
		return app
	}
	return DefaultAppID
}

// cloudHandle encodes a datastore handle as the Cloud API's opaque
// transaction bytes.
func cloudHandle(h uint64) []byte { return strconv.AppendUint(nil, h, 36) }

// parseCloudHandle reads what cloudHandle wrote.
func parseCloudHandle(b []byte) (uint64, error) {
	h, err := strconv.ParseUint(string(b), 36, 64)
	if err != nil || h == 0 {
		return 0, badRequest("invalid transaction: %q is not a transaction this server began", truncateBytes(b, 40))
	}
	return h, nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
