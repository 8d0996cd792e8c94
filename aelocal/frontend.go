package aelocal

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
)

// The front end: what stands before an app on App Engine, for an app run
// on its own (go run) with cmd/aelocal. It listens on a port of its own
// (Options.FrontAddr) and passes every request to the app (Options.AppURL)
// as App Engine's front end does:
//
//   - it strips every X-AppEngine-* header the request came with, so that
//     nothing from outside can claim to be a signed-in user, an
//     administrator, a cron job or a task;
//   - it adds the headers of the user the login page signed in (its
//     cookie), X-AppEngine-User-IP and X-AppEngine-Country (ZZ, unknown,
//     as dev_appserver sent), which appengine/v2 reads;
//   - it serves /_ah/login and /_ah/logout itself, on the app's origin, as
//     dev_appserver did; user.LoginURL and user.LogoutURL point there.
//
// The app's own port still believes whatever headers reach it: people
// should browse the app through the front end, as production's apps can
// only be reached through Google's.
//
// It listens on a loopback address only and answers only requests whose
// Host names this machine (localhost, a loopback address) or one of the
// server's allowed hosts, the check the API server makes, so that a page
// of another site cannot reach it by rebinding its DNS name to 127.0.0.1.
// Its one action of its own, signing in and out, takes a POST of its own
// form (token, origin check). The signed-in user's cookie is SameSite=Lax,
// but to a browser every local port is one site, so the front end itself
// withholds the user from requests that pages of other origins make, as
// production's browsers would (fromAppSite).

// frontEnd is a started front end.
type frontEnd struct {
	url       string
	http      *http.Server
	transport *http.Transport // to the app
	limiter   *connLimiter
}

// FrontURL returns the base URL of the app's front end, as
// http://127.0.0.1:8081, or "" if the server has none (see
// Options.FrontAddr).
func (s *Server) FrontURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.front == nil {
		return ""
	}
	return s.front.url
}

// checkFrontAddr refuses a front end that would listen beyond this
// machine, or has no app to pass requests to.
func checkFrontAddr(addr, appURL string) error {
	if appURL == "" {
		return errors.New("aelocal: a front end (-front_addr, Options.FrontAddr) needs the app's URL (-app_url, Options.AppURL) to pass requests to")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("aelocal: front end address %q: %v", addr, err)
	}
	if !loopbackHost(host) {
		return fmt.Errorf("aelocal: front end address %q: it must be a loopback address, as 127.0.0.1:8081; the front end signs people in without a password", addr)
	}
	return nil
}

// loopbackHost reports whether host (a name or an address, without port)
// names this machine.
func loopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// startFrontEnd listens on addr and passes requests to the app at app.
func (s *Server) startFrontEnd(addr string, app *url.URL) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("aelocal: front end: %w", err)
	}
	transport := newAppTransport()
	proxy := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite:   func(pr *httputil.ProxyRequest) { s.frontRewrite(pr, app) },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Printf("aelocal: front end: %s %s: the app at %s did not answer: %v", r.Method, r.URL.Path, app, err)
			http.Error(w, fmt.Sprintf("aelocal front end: the app at %s did not answer (%v). Is it running?", app, err), http.StatusBadGateway)
		},
		ModifyResponse: s.sendBlob, // blobstore.Send (blobstore_upload.go)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ah/login", s.serveLogin)
	mux.HandleFunc("/_ah/logout", s.serveLogout)
	mux.Handle("/", proxy)
	mux.HandleFunc(uploadPath, s.serveUpload(proxy)) // blobstore uploads (blobstore_upload.go)
	// The same bounds on connections as the API server's; bodies stream
	// through to the app, which sets its own limits, as on App Engine.
	limiter := newConnLimiter(ln, cap(s.limiter.slots))
	f := &frontEnd{url: "http://" + ln.Addr().String(), transport: transport, limiter: limiter}
	f.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.hostAllowed(r.Host) {
				http.Error(w, fmt.Sprintf("aelocal front end: refused: Host %q does not name this machine; open %s", r.Host, f.url), http.StatusMisdirectedRequest)
				return
			}
			s.logRequests(mux).ServeHTTP(w, r) // request logs (logservice.go)
		}),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       s.http.IdleTimeout,
		ConnState:         limiter.connState,
		ErrorLog:          log.New(log.Writer(), "aelocal: front end: ", 0),
	}
	s.mu.Lock()
	s.front = f // the server already answers requests, which read it
	s.mu.Unlock()
	go f.http.Serve(limiter)
	return nil
}

// frontRewrite makes the request the app gets from one that reached the
// front end.
func (s *Server) frontRewrite(pr *httputil.ProxyRequest, app *url.URL) {
	pr.SetURL(app)
	pr.Out.Host = pr.In.Host // the app sees the name it is browsed by
	pr.SetXForwarded()
	for k := range pr.Out.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-appengine-") {
			delete(pr.Out.Header, k)
		}
	}
	h := pr.Out.Header
	if u := s.loginUser(pr.In); u != nil && fromAppSite(pr.In) {
		setUserHeaders(h, u)
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		h.Set("X-AppEngine-User-IP", ip)
	}
	h.Set("X-AppEngine-Country", "ZZ")
	setRequestLogHeaders(pr.In, h) // logservice.go
}

// fromAppSite reports whether a browser on App Engine would have sent the
// login cookie (SameSite=Lax) with r: r comes from the app's own origin,
// or is a top-level navigation with a safe method. A browser counts every
// port of 127.0.0.1 (or localhost) as one site and sends the cookie to the
// front end with requests from pages of other local servers too; on App
// Engine the app's origin is a site of its own, so those requests carry no
// user, and the front end passes them on without one. Clients that send
// none of these headers (curl, tests) are not browsers and pass.
func fromAppSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-site", "cross-site":
		dest := r.Header.Get("Sec-Fetch-Dest")
		return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			r.Header.Get("Sec-Fetch-Mode") == "navigate" && (dest == "" || dest == "document")
	}
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, "http://"+r.Host) {
		return false
	}
	return true
}

// stopFrontEnd closes the front end and its connections.
func (s *Server) stopFrontEnd() {
	s.mu.Lock()
	f := s.front
	s.mu.Unlock()
	if f != nil {
		f.http.Close()
		f.transport.CloseIdleConnections()
	}
}
