package main

import (
	"bytes"
	"html/template"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/cloud"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// maxUserName bounds the user name kept in the session, in characters.
const maxUserName = 100

// sessionCookie is icza/session's cookie (CookieManager's default).
const sessionCookie = "sessid"

// handler is the demo's HTTP handler: /demo, /demo/evict, /_ah/health,
// behind the local-host check and aelocal's middleware (which gives each
// request an App Engine context, for the bundled Memcache).
func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/demo", a.demo)
	mux.HandleFunc("/demo/evict", a.evict)
	mux.HandleFunc("/_ah/health", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, "/demo", http.StatusFound)
	})
	return localHostOnly(a.ae.Middleware(mux))
}

// demo serves /demo: GET shows the login form, or the session and one
// more visit; POST logs in or out and answers with a redirect.
func (a *app) demo(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		http.Error(w, "forbidden: the form was posted from another site", http.StatusForbidden)
		return
	}
	ctx, cost := counted(appengine.NewContext(r))
	store := cloud.NewStore(ctx, a.ds, a.cache, nil)
	mgr := session.NewCookieManagerOptions(store, &session.CookieMngrOptions{AllowHTTP: true})
	closed := false
	closeStore := func() {
		if !closed {
			closed = true
			mgr.Close()
			if err := gaesession.SaveError(store); err != nil {
				log.Printf("the session was not saved: %v", err)
			}
			log.Printf("%s %s: %s", r.Method, r.URL.Path, cost)
		}
	}
	defer closeStore()

	data := pageData{Cache: a.cacheName, Redis: a.redisName}
	sess := mgr.Get(r)
	if r.Method == http.MethodPost {
		switch {
		case r.PostFormValue("Logout") != "":
			if sess != nil {
				mgr.Remove(sess, w)
			}
		case r.PostFormValue("Login") != "":
			name := r.PostFormValue("UserName")
			if name == "" || utf8.RuneCountInString(name) > maxUserName || !utf8.ValidString(name) {
				data.InvalidLogin = true
				break
			}
			if sess != nil {
				mgr.Remove(sess, w) // a new login gets a new session ID
			}
			mgr.Add(session.NewSessionOptions(&session.SessOptions{
				CAttrs: map[string]any{"UserName": name},
				Attrs:  map[string]any{"Count": 0},
			}), w)
		}
		if !data.InvalidLogin {
			closeStore()
			http.Redirect(w, r, "/demo", http.StatusSeeOther)
			return
		}
	}
	if sess != nil && r.Method == http.MethodGet {
		n, _ := sess.Attr("Count").(int)
		sess.SetAttr("Count", n+1) // a page view: a modified request
	}
	if sess != nil {
		data.UserName, _ = sess.CAttr("UserName").(string)
		data.Count, _ = sess.Attr("Count").(int)
		data.LoggedIn = true
		data.Origin = string(gaesession.SessionOrigin(store, sess.ID()))
	}
	closeStore()
	data.Cost = cost.String()

	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		log.Printf("rendering the page: %v", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.Write(buf.Bytes())
}

// evict serves POST /demo/evict: it deletes the visitor's own session, and
// nothing else, from Redis, as if Redis had evicted it; the next page
// finds it in the Cloud Datastore.
func (a *app) evict(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "forbidden: the form was posted from another site", http.StatusForbidden)
		return
	}
	// The store keeps a session under its ID (no KeyPrefix; icza/session's
	// IDs are far below the 250 bytes past which the key is hashed).
	if c, err := r.Cookie(sessionCookie); err == nil && gaesession.ValidID(c.Value) {
		if err := a.redis.Del(r.Context(), c.Value).Err(); err != nil {
			log.Printf("dropping the session from Redis: %v", err)
			http.Error(w, "dropping the session from Redis failed", http.StatusInternalServerError)
			return
		}
	}
	http.Redirect(w, r, "/demo", http.StatusSeeOther)
}

// sameOrigin reports whether a POST comes from a page of this site (a
// browser sends the page's origin with a form it posts); requests without
// an Origin header are let through, the SameSite cookie covers them.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// localHostOnly refuses requests whose Host header does not name this
// machine: listening on 127.0.0.1 keeps other machines out, but a web page
// whose name resolves to 127.0.0.1 (DNS rebinding) carries its own name.
func localHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && !strings.HasSuffix(host, ".localhost") && (err != nil || !ip.Unmap().IsLoopback()) {
			http.Error(w, "refused: the Host header does not name this machine; open the demo at http://localhost:PORT/demo", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type pageData struct {
	InvalidLogin bool
	LoggedIn     bool
	UserName     string
	Count        int
	Origin       string
	Cache        string
	Redis        string
	Cost         string // what this request sent to Redis and the Datastore
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gaesession demo on the Cloud store</title>
<style>
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 44em; overflow-wrap: anywhere; }
.error { color: #b00; }
.note { color: #555; font-size: 90%; }
form { margin: 1em 0; }
</style>
</head>
<body>
<h1>gaesession demo on the Cloud store</h1>
{{if .InvalidLogin}}<p class="error" id="invalid-login">Invalid user name.</p>{{end}}
{{if .LoggedIn}}
<p>Hello <b id="user">{{.UserName}}</b>! Since login you visited this page <b id="count">{{.Count}}</b> times. <a href="/demo">Refresh</a></p>
<p>Loaded from: <span id="origin">{{.Origin}}</span> ("memcache" stands for the cache, whichever it is).</p>
<form method="post" action="/demo"><input type="submit" name="Logout" value="Logout"></form>
<form method="post" action="/demo/evict"><input type="submit" value="Drop the session from Redis">
<span class="note">As if Redis had evicted it: the next page loads it from the Cloud Datastore.</span></form>
{{else}}
<form method="post" action="/demo" id="login">
<label for="UserName">User name:</label> <input type="text" name="UserName" id="UserName" maxlength="100" autofocus>
<input type="submit" name="Login" value="Login">
</form>
{{end}}
<p class="note" id="cost">This request: {{.Cost}}.</p>
<p class="note">Cache: {{.Cache}}. Redis: {{.Redis}}. Cloud Datastore: aelocal, in process.</p>
</body>
</html>
`))
