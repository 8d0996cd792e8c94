/*
Command _gae_session_demo is a small web app that shows
github.com/icza/gaesession/v2 at work: log in, refresh, watch a counter in
the session go up, log out.

It serves the demo at /demo and the cron job that deletes expired sessions
from the Datastore at /demo/purge.

Where it runs decides what it talks to:

  - On App Engine (GAE_ENV is set by the runtime) it is an ordinary App
    Engine app: appengine.Main, the real Memcache and Datastore.
  - Locally with API_HOST set (for example to a running cmd/aelocal), it
    uses that API server, so several instances can share one Memcache and
    one Datastore.
  - Locally without API_HOST it starts an aelocal server of its own, in
    process, so "go run ./_gae_session_demo" needs nothing but Go.

Locally it listens on 127.0.0.1 only, on PORT (default 8080), answers only
requests addressed to localhost or a loopback address (so that a web page
of another site cannot reach it through DNS rebinding), sends its
session cookie over plain HTTP, shows under each page the App Engine RPCs
the request made, and, while you are logged in, offers a button that drops
your session (and nothing else) from Memcache, so that you can watch it
come back from the Datastore.

It is meant to be copied: login, logout and dropping the session happen on
POST only (answered with a 303; a page view only counts a visit in the
session), the cookie is SameSite=Lax, and every response forbids sniffing
and framing. See README.md.
*/
package main

import (
	"log"
	"net"
	"net/http"
	"os"

	"github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
)

// env describes where the demo runs; it is set once in main, before any
// request is served.
var env struct {
	onAppEngine bool
	apiServer   string // base URL of the local API server; "" on App Engine
	listenHost  string // the address appengine.Main listens on locally
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("gae_session_demo: ")

	env.onAppEngine = appengine.IsAppEngine()
	if !env.onAppEngine {
		setUpLocal()
	}

	handle("/", http.HandlerFunc(rootHandler))
	handle("/demo", withSameSiteLax(http.HandlerFunc(demoHandler)))
	// The purge runs for App Engine cron (and task queue) requests only;
	// see also app.yaml and cron.yaml.
	handle("/demo/purge", gaesession.PurgeExpiredSessFromDSFuncOptions(
		&gaesession.PurgeOptions{CronOnly: true}))
	if !env.onAppEngine {
		handle("/demo/flush", http.HandlerFunc(flushHandler))
	}

	if !env.onAppEngine {
		port := os.Getenv("PORT")
		if port == "" {
			port = "8080" // appengine.Main's default
		}
		log.Printf("open http://localhost:%s/demo", port)
	}
	appengine.Main() // serves on PORT; returns only on failure, by log.Fatal
}

// setUpLocal points the App Engine client library at a local API server:
// the one named by API_HOST and API_PORT, or else a new one in this process.
func setUpLocal() {
	if os.Getenv("API_HOST") == "" {
		srv, err := aelocal.NewServer() // also sets GAE_APPLICATION if unset
		if err != nil {
			log.Fatalf("starting the embedded App Engine API server: %v", err)
		}
		host, port := srv.Addr()
		os.Setenv("API_HOST", host)
		os.Setenv("API_PORT", port)
		env.apiServer = srv.URL()
		log.Printf("App Engine API server (aelocal, in process): %s", env.apiServer)
	} else {
		port := os.Getenv("API_PORT")
		if port == "" {
			port = "10001" // the client library's default
		}
		env.apiServer = "http://" + net.JoinHostPort(os.Getenv("API_HOST"), port)
		log.Printf("App Engine API server (from API_HOST, API_PORT): %s", env.apiServer)
	}
	// appengine/v2 takes the application ID from here, and cannot make
	// Datastore keys without one.
	if os.Getenv("GAE_APPLICATION") == "" {
		os.Setenv("GAE_APPLICATION", aelocal.DefaultAppID)
	}
	// With RUN_WITH_DEVAPPSERVER set, appengine.Main listens on 127.0.0.1
	// instead of all interfaces. Nothing else in appengine/v2 2.0.6 that
	// this app uses depends on it: it only lets an incoming
	// X-Appengine-Dev-Request-Id header serve as the API ticket, which the
	// local API server ignores.
	if os.Getenv("RUN_WITH_DEVAPPSERVER") == "" {
		os.Setenv("RUN_WITH_DEVAPPSERVER", "1")
	}
	env.listenHost = "127.0.0.1"
}

// handle registers h for pattern, behind guarded.
func handle(pattern string, h http.Handler) {
	http.Handle(pattern, guarded(h))
}

// guarded is h with the checks and headers every response of the demo
// carries: locally, only requests addressed to this machine by name
// (localHostOnly); no content-type sniffing, and no framing by other sites
// (clickjacking); the page itself loads nothing from anywhere.
func guarded(h http.Handler) http.Handler {
	return localHostOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		hdr.Set("X-Frame-Options", "DENY") // frame-ancestors for older browsers
		hdr.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	}))
}

// rootHandler sends "/" to the demo and answers 404 for other unknown paths.
func rootHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/demo", http.StatusFound)
}
