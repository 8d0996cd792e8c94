package main

import (
	"net/http"
	"strings"
)

// withSameSiteLax wraps h so that every cookie h sets without a SameSite
// attribute gets SameSite=Lax: browsers then send it with top-level
// navigations to the site but not with requests other sites start (a form
// another site posts here, an image it loads), so no other site can make a
// logged-in browser log out or do anything else here.
//
// icza/session's CookieManager has no option for SameSite; rather than
// copy the manager, the wrapper edits the Set-Cookie headers it wrote, at
// the moment the headers go out.
func withSameSiteLax(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &sameSiteWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		sw.patch() // the handler wrote nothing: net/http sends the headers after it returns
	})
}

// sameSiteWriter adds SameSite=Lax to the response's Set-Cookie headers
// before they are sent.
type sameSiteWriter struct {
	http.ResponseWriter
	patched bool
}

func (w *sameSiteWriter) WriteHeader(code int) {
	w.patch()
	w.ResponseWriter.WriteHeader(code)
}

func (w *sameSiteWriter) Write(b []byte) (int, error) {
	w.patch()
	return w.ResponseWriter.Write(b)
}

// Flush sends the headers, patched, and what was written so far.
func (w *sameSiteWriter) Flush() {
	w.patch()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *sameSiteWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *sameSiteWriter) patch() {
	if w.patched {
		return
	}
	w.patched = true
	cookies := w.Header()["Set-Cookie"]
	for i, c := range cookies {
		if !hasSameSite(c) {
			cookies[i] = c + "; SameSite=Lax"
		}
	}
}

// hasSameSite tells whether a Set-Cookie header value has a SameSite
// attribute.
func hasSameSite(setCookie string) bool {
	attrs := strings.Split(setCookie, ";")
	for _, a := range attrs[1:] { // attrs[0] is name=value
		name, _, _ := strings.Cut(strings.TrimSpace(a), "=")
		if strings.EqualFold(name, "SameSite") {
			return true
		}
	}
	return false
}
