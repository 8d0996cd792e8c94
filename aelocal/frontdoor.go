package aelocal

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The front door: what every HTTP request passes before it reaches the
// service bridge or a page. aelocal listens on loopback, but a web page in
// the developer's browser can reach loopback too, so:
//
//   - a request must name a loopback host (or one in Options.AllowedHosts)
//     in its Host header: a page that rebinds its own DNS name to 127.0.0.1
//     still sends that name, and is refused;
//   - a bridge call must carry the headers App Engine's clients send (v1
//     and v2 alike): X-Google-RPC-Service-Endpoint, -Method and Content-Type
//     application/octet-stream. A page can send none of them without a
//     CORS preflight, which aelocal never grants;
//   - a bridge call must carry no Origin header, which browsers add and the
//     clients never do; a page request may carry only its own origin.
//
// Resources are bounded: request bodies in flight share a byte budget, an
// idle connection is closed after a while, and connections are capped (at
// the cap, the one idle longest makes room for a new one).

// Bridge headers, as google.golang.org/appengine (v1 and v2) sends them in
// internal/api.go.
const (
	bridgeEndpointHeader = "X-Google-Rpc-Service-Endpoint"
	bridgeEndpointValue  = "app-engine-apis"
	bridgeMethodHeader   = "X-Google-Rpc-Service-Method"
	bridgeMethodValue    = "/VMRemoteAPI.CallRemoteAPI"
	bridgeContentType    = "application/octet-stream"
)

// Front-door defaults.
const (
	readHeaderTimeout = 10 * time.Second
	// bodyReadTimeout bounds the reading of one request body. It is set on
	// the connection per request, not as http.Server.ReadTimeout, which
	// would also cancel calls that legitimately take long (SetLatency).
	bodyReadTimeout = 30 * time.Second
	// defaultIdleTimeout exceeds the 90 s after which the App Engine
	// client closes idle connections itself, so that the client, not the
	// server, ends them: a call never goes out on a connection the server
	// is closing at that moment.
	defaultIdleTimeout = 2 * time.Minute
	defaultMaxConns    = 512
	// defaultBodyBudget is the request bytes held at once, across
	// requests: two bodies of the largest size, or many small ones.
	defaultBodyBudget = 2 * maxRequestBytes
	// maxPageBodyBytes bounds the body of a request to a page: the
	// largest a page takes is a console form (consoleMaxForm), which
	// bounds its own more tightly if need be.
	maxPageBodyBytes = consoleMaxForm
)

// frontDoor wraps the server's pages: admit decides on every request; bridge
// calls, recognised by their headers on any path, go to the bridge.
func (s *Server) frontDoor(pages http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bridge := isBridgeCall(r)
		if code, msg := s.admit(r, bridge); code != 0 {
			http.Error(w, msg, code)
			return
		}
		if bridge {
			if msg := checkBridgeHeaders(r); msg != "" {
				http.Error(w, "aelocal: "+msg, http.StatusBadRequest)
				return
			}
			s.serveBridge(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxPageBodyBytes)
		pages.ServeHTTP(w, r)
	})
}

// admit is the check every request passes, bridge calls and pages alike.
// It returns an HTTP status and message to refuse r with, or 0.
func (s *Server) admit(r *http.Request, bridge bool) (int, string) {
	if !s.hostAllowed(r.Host) {
		return http.StatusForbidden, fmt.Sprintf("aelocal: refused: Host %q is not a loopback name or address, nor one of the allowed hosts (Options.AllowedHosts, -allowed_hosts). aelocal checks it so that web pages cannot reach it through DNS rebinding.", r.Host)
	}
	if origin, ok := r.Header["Origin"]; ok {
		if bridge {
			return http.StatusForbidden, "aelocal: refused: this service bridge call carries an Origin header, so a web page sent it; App Engine clients never do"
		}
		if len(origin) != 1 || !strings.EqualFold(origin[0], "http://"+r.Host) {
			return http.StatusForbidden, "aelocal: refused: a request from a web page of another origin"
		}
	}
	return 0, ""
}

// hostAllowed reports whether hostport, a Host header, names this server:
// localhost, a loopback address, the address it listens on, or an allowed
// host.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	if loopbackHost(host) {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && s.listenIP != nil && s.listenIP.Equal(ip) {
		return true
	}
	for _, a := range s.allowedHosts {
		if strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// normalizeHosts strips ports, brackets and trailing dots from configured
// host names.
func normalizeHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ".")
		if h != "" {
			out = append(out, h)
		}
	}
	return out
}

// isBridgeCall reports whether r presents itself as a service bridge call:
// App Engine's clients mark every call with the service headers, whatever
// the path (v2 posts to /rpc_http, older v1 releases to the URL they were
// given).
func isBridgeCall(r *http.Request) bool {
	return r.Header.Get(bridgeEndpointHeader) != "" || r.Header.Get(bridgeMethodHeader) != ""
}

// checkBridgeHeaders returns what is wrong with the headers of a bridge
// call, or "".
func checkBridgeHeaders(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Header.Get(bridgeEndpointHeader) != bridgeEndpointValue ||
		r.Header.Get(bridgeMethodHeader) != bridgeMethodValue ||
		mt != bridgeContentType {
		return fmt.Sprintf("not a service bridge call: App Engine clients send %s: %s, %s: %s and Content-Type: %s",
			bridgeEndpointHeader, bridgeEndpointValue, bridgeMethodHeader, bridgeMethodValue, bridgeContentType)
	}
	return ""
}

// serveBridgePath answers requests to /rpc_http that are not bridge calls.
func (s *Server) serveBridgePath(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "aelocal: POST a remote_api.Request here", http.StatusMethodNotAllowed)
		return
	}
	http.Error(w, "aelocal: "+checkBridgeHeaders(r), http.StatusBadRequest)
}

// readBridgeBody reads the body of a bridge call within the byte budget.
// The caller must call release once it no longer needs the body.
func (s *Server) readBridgeBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), rerr *rpcError) {
	n := r.ContentLength
	if n > maxRequestBytes {
		return nil, nil, &rpcError{code: rpcRequestTooLarge, detail: fmt.Sprintf("request body of %d bytes is larger than aelocal's limit of %d", n, maxRequestBytes)}
	}
	reserve := n
	if n < 0 {
		reserve = maxRequestBytes // unknown length: the most it may be
	}
	if err := s.budget.acquire(r.Context(), reserve); err != nil {
		return nil, nil, &rpcError{code: rpcCancelled, detail: "call cancelled while waiting to be read: " + err.Error()}
	}
	release = func() { s.budget.release(reserve) }
	// Not every ResponseWriter has deadlines (a test's recorder has not).
	// After a failed read the deadline stays: the server must not wait for
	// the rest of that body before it answers and closes the connection.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) == nil
	var err error
	if n >= 0 {
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
		if err == nil && len(body) > maxRequestBytes {
			release()
			return nil, nil, &rpcError{code: rpcRequestTooLarge, detail: "request body too large"}
		}
	}
	if err != nil {
		release()
		return nil, nil, &rpcError{code: rpcUnknown, detail: "reading request: " + err.Error()}
	}
	if deadline {
		rc.SetReadDeadline(time.Time{})
	}
	return body, release, nil
}

// byteBudget is a weighted semaphore of bytes, first come first served.
type byteBudget struct {
	mu      sync.Mutex
	free    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newByteBudget(n int64) *byteBudget { return &byteBudget{free: n} }

// acquire takes n bytes, waiting until they are free or ctx ends.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= n {
		b.free -= n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.free += n
			b.grantLocked()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grantLocked() // the head may have changed
		}
		return ctx.Err()
	}
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	b.grantLocked()
}

func (b *byteBudget) grantLocked() {
	for len(b.waiters) > 0 && b.waiters[0].n <= b.free {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.free -= w.n
		close(w.ready)
	}
}

// connLimiter caps the connections of a listener. A connection that
// arrives at the cap closes the one that has been idle longest, or waits
// until one closes.
type connLimiter struct {
	net.Listener
	slots chan struct{}
	idled chan struct{} // a connection went idle
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	idle map[*limitedConn]time.Time // idle connections, since when
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{
		Listener: ln,
		slots:    make(chan struct{}, max),
		idled:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		idle:     make(map[*limitedConn]time.Time),
	}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, l: l}, nil
		default:
		}
		if l.closeOldestIdle() {
			continue // its Close gave back its slot
		}
		// Every connection is busy: wait for one to close or go idle.
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, l: l}, nil
		case <-l.idled:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// open returns the number of connections open.
func (l *connLimiter) open() int { return len(l.slots) }

// closeOldestIdle closes the connection idle longest, if any is idle.
func (l *connLimiter) closeOldestIdle() bool {
	l.mu.Lock()
	var oldest *limitedConn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest == nil {
		return false
	}
	oldest.Close()
	return true
}

// connState is the http.Server's ConnState hook: it tracks which
// connections are idle.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		l.idle[lc] = time.Now()
		select {
		case l.idled <- struct{}{}:
		default:
		}
	} else {
		delete(l.idle, lc)
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.idle, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
