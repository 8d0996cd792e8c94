package main

import (
	"bytes"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"os"

	"github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// demoHandler serves /demo: it shows the login form or the session, logs in
// (a POST with UserName, Password and Login) and logs out (a POST with
// Logout). Every request that finds a session counts one more visit.
func demoHandler(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	ctx := appengine.NewContext(r)
	store := gaesession.NewMemcacheStore(ctx)
	// Browsers keep Secure cookies from plain-HTTP pages (as on
	// http://localhost) to themselves, so locally the cookie goes without
	// the Secure flag. On App Engine, app.yaml redirects to HTTPS.
	mgr := session.NewCookieManagerOptions(store, &session.CookieMngrOptions{AllowHTTP: !env.onAppEngine})
	// Close saves what this request changed to Memcache and the Datastore.
	// It runs before the response is complete, so the next request, on any
	// instance, sees the change.
	defer mgr.Close()

	data := pageData{Local: !env.onAppEngine, APIServer: env.apiServer, Instance: instanceName()}

	sess := mgr.Get(r)
	switch {
	case sess != nil && r.FormValue("Logout") != "":
		mgr.Remove(sess, w) // from Memcache and the Datastore
		sess = nil
	case sess != nil:
		sess.SetAttr("Count", count(sess)+1)
	case r.FormValue("Login") != "":
		if name := r.FormValue("UserName"); name != "" && r.FormValue("Password") == "a" {
			sess = session.NewSessionOptions(&session.SessOptions{
				CAttrs: map[string]interface{}{"UserName": name},
				Attrs:  map[string]interface{}{"Count": 1},
			})
			mgr.Add(sess, w)
		} else {
			data.InvalidLogin = true
		}
	}

	if sess != nil {
		origin := gaesession.SessionOrigin(store, sess.ID())
		userName, _ := sess.CAttr("UserName").(string)
		data.Sess = &sessData{
			UserName:   userName,
			Count:      count(sess),
			IDPrefix:   idPrefix(sess.ID()),
			Created:    sess.Created().Format(timeLayout),
			Accessed:   sess.Accessed().Format(timeLayout),
			Timeout:    sess.Timeout().String(),
			Origin:     string(origin),
			OriginText: originText(origin),
		}
	}

	// Rendered into a buffer so that a template error does not leave half
	// a page behind.
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		log.Printf("rendering the page: %v", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// flushHandler serves POST /demo/flush, registered only when running
// locally: it empties Memcache, as if App Engine had evicted everything,
// and sends the browser back to /demo, which then finds the session in the
// Datastore.
func flushHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := memcache.Flush(appengine.NewContext(r)); err != nil {
		log.Printf("emptying memcache: %v", err)
		http.Error(w, "emptying memcache failed", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/demo", http.StatusSeeOther)
}

// count returns the session's visit counter, 0 if it has none.
func count(sess session.Session) int {
	n, _ := sess.Attr("Count").(int)
	return n
}

// idPrefix shortens a session ID for display. The ID is the user's own
// bearer secret; a few characters are enough to tell sessions apart.
func idPrefix(id string) string {
	if len(id) <= 6 {
		return id
	}
	return id[:6] + "…"
}

func originText(o gaesession.Origin) string {
	switch o {
	case gaesession.OriginNew:
		return "nowhere: this request created it"
	case gaesession.OriginRequestCache:
		return "the store's per-request cache"
	case gaesession.OriginMemcache:
		return "Memcache"
	case gaesession.OriginDatastore:
		return "the Datastore (Memcache did not have it)"
	}
	return "unknown"
}

// instanceName tells which process served the request, so that a demo with
// several instances shows which one answered.
func instanceName() string {
	if id := os.Getenv("GAE_INSTANCE"); id != "" {
		if len(id) > 12 {
			id = id[:12] + "…"
		}
		return "instance " + id
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return fmt.Sprintf("process %d on port %s", os.Getpid(), port)
}

const timeLayout = "2006-01-02 15:04:05 MST"

type pageData struct {
	InvalidLogin bool
	Sess         *sessData // nil when not logged in
	Local        bool
	APIServer    string
	Instance     string
}

type sessData struct {
	UserName           string
	Count              int
	IDPrefix           string
	Created, Accessed  string
	Timeout            string
	Origin, OriginText string
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gaesession demo</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 44em; }
th { text-align: left; padding-right: 1em; font-weight: normal; color: #555; }
label { display: inline-block; width: 7em; }
.error { color: #b00; }
.note { color: #555; font-size: 90%; }
form { margin: 1em 0; }
</style>
</head>
<body>
<h1>gaesession demo</h1>
{{if .InvalidLogin}}<p class="error" id="invalid-login">Invalid user name or password.</p>{{end}}
{{with .Sess}}
<p>Hello <b id="user">{{.UserName}}</b>! Since login you visited this page <b id="count">{{.Count}}</b> times. <a href="/demo">Refresh</a></p>
<table>
<tr><th>Session ID</th><td><code>{{.IDPrefix}}</code></td></tr>
<tr><th>Created</th><td>{{.Created}}</td></tr>
<tr><th>Last access</th><td>{{.Accessed}}</td></tr>
<tr><th>Timeout</th><td>{{.Timeout}}</td></tr>
<tr><th>Loaded from</th><td id="origin" data-origin="{{.Origin}}">{{.OriginText}}</td></tr>
</table>
<form method="post" action="/demo">
<input type="submit" name="Logout" value="Logout">
</form>
{{else}}
<form method="post" action="/demo" id="login">
<label for="UserName">User name:</label> <input type="text" name="UserName" id="UserName" autofocus><br>
<label for="Password">Password:</label> <input type="password" name="Password" id="Password">
<span class="note">Tip: the password is "a".</span><br>
<input type="submit" name="Login" value="Login">
</form>
{{end}}
{{if .Local}}
<form method="post" action="/demo/flush">
<input type="submit" value="Empty memcache">
<span class="note">The session survives in the Datastore: the next page says where it was loaded from.</span>
</form>
<p class="note">Running locally. App Engine API server: <a href="{{.APIServer}}/">{{.APIServer}}</a> (its page counts the RPCs served).</p>
{{end}}
<p class="note">Served by {{.Instance}}.</p>
</body>
</html>
`))
