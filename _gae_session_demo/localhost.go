package main

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// localHostOnly refuses, when the demo runs locally, requests whose Host
// header does not name this machine. Listening on 127.0.0.1 keeps other
// machines out, but not web pages: a page on another site can have its
// name resolve to 127.0.0.1 (DNS rebinding) and then, being same-origin
// with itself, drive the demo from the visitor's browser, read its pages
// and post its forms. Such requests carry the page's own name as Host,
// which the check refuses. On App Engine, whose front end routes requests
// by Host, nothing changes.
func localHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !env.onAppEngine && !localHost(r.Host, env.listenHost) {
			http.Error(w, "refused: the Host header does not name this machine; open the demo at http://localhost:PORT/demo", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// localHost reports whether hostport, a Host header, names this machine:
// localhost (or a name under .localhost, which browsers keep on the
// loopback interface), a loopback address, or listen, the address the demo
// listens on. The port does not matter: a rebound page's Host may carry
// the demo's port too.
func localHost(hostport, listen string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	switch {
	case host == "":
		return false
	case host == "localhost", strings.HasSuffix(host, ".localhost"):
		return true
	case listen != "" && strings.EqualFold(host, listen):
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
