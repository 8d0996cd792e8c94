package main

import (
	"bytes"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"os"
	"unicode/utf8"

	"github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// maxUserName bounds the user name kept in the session, in characters.
const maxUserName = 100

// demoHandler serves /demo. GET shows the login form, or the session and
// one more visit; POST logs in (UserName, Password, Login) or out (Logout)
// and answers with a redirect to the page, so that a refresh does not send
// the form again. Form values are read from the POST body only: a link
// (GET /demo?Logout=1) changes nothing.
func demoHandler(w http.ResponseWriter, r *http.Request) {
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

	ctx := appengine.NewContext(r)
	var rpcs *rpcCounter
	if !env.onAppEngine {
		ctx, rpcs = countRPCs(ctx)
	}
	store := gaesession.NewMemcacheStore(ctx)
	// Browsers keep Secure cookies from plain-HTTP pages (as on
	// http://localhost) to themselves, so locally the cookie goes without
	// the Secure flag. On App Engine, app.yaml redirects to HTTPS.
	// withSameSiteLax (main.go) adds SameSite=Lax to the cookie.
	mgr := session.NewCookieManagerOptions(store, &session.CookieMngrOptions{AllowHTTP: !env.onAppEngine})
	// Close saves what this request changed to Memcache and the Datastore.
	// It runs before the response is written, so that the next request, on
	// any instance, sees the change, and so that the page can show what
	// the whole request cost.
	defer mgr.Close()

	data := pageData{Local: !env.onAppEngine, APIServer: env.apiServer, Instance: instanceName()}
	sess := mgr.Get(r)
	// A fixed notice, only when nobody is logged in: a link cannot make
	// the page say anything else, nor say it to someone logged in.
	data.LoggedOut = sess == nil && r.Method != http.MethodPost && r.URL.Query().Get("loggedout") != ""

	if r.Method == http.MethodPost {
		switch {
		case r.PostFormValue("Logout") != "":
			if sess != nil {
				mgr.Remove(sess, w) // from Memcache (a tombstone) and the Datastore
			}
		case r.PostFormValue("Login") != "":
			name := r.PostFormValue("UserName")
			if name == "" || r.PostFormValue("Password") != "a" || utf8.RuneCountInString(name) > maxUserName || !utf8.ValidString(name) {
				data.InvalidLogin = true
				break
			}
			if sess != nil {
				mgr.Remove(sess, w) // a new login gets a new session ID
			}
			mgr.Add(session.NewSessionOptions(&session.SessOptions{
				CAttrs: map[string]interface{}{"UserName": name},
				Attrs:  map[string]interface{}{"Count": 0},
			}), w)
		}
		if !data.InvalidLogin {
			mgr.Close()
			logSaveError(store)
			to := "/demo"
			if r.PostFormValue("Logout") != "" {
				// The page after a logout says so: without a word it
				// would look just as it did before the login.
				to = "/demo?loggedout=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
	}

	if sess != nil && r.Method == http.MethodGet {
		// A page view: the change that a modified request costs.
		sess.SetAttr("Count", count(sess)+1)
	}
	if sess != nil {
		origin := gaesession.SessionOrigin(store, sess.ID())
		userName, _ := sess.CAttr("UserName").(string)
		n := count(sess)
		data.Sess = &sessData{
			UserName:   userName,
			Count:      n,
			Times:      "times",
			IDPrefix:   idPrefix(sess.ID()),
			Created:    sess.Created().Format(timeLayout),
			Accessed:   sess.Accessed().Format(timeLayout),
			Timeout:    sess.Timeout().String(),
			Origin:     string(origin),
			OriginText: originText(origin),
		}
		if n == 1 {
			data.Sess.Times = "time"
		}
	}
	mgr.Close()
	logSaveError(store)
	if rpcs != nil {
		data.RPCs = rpcs.summary()
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

// logSaveError logs, for the person running the demo, that the store could
// not save (or remove) a session. The store has logged the details.
func logSaveError(store session.Store) {
	if err := gaesession.SaveError(store); err != nil {
		log.Printf("the session was not saved: %v", err)
	}
}

// sameOrigin reports whether a POST comes from a page of this site: a
// browser sends the page's origin along with a form it posts. Requests
// without an Origin header (older browsers, command-line clients) are let
// through; the SameSite cookie covers those browsers.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// flushHandler serves POST /demo/flush, registered only when running
// locally: it drops the visitor's own session from Memcache, as if App
// Engine had evicted it, and sends the browser back to /demo, which then
// finds the session in the Datastore. It deletes that one item and
// nothing else: the Memcache of a local API server may be shared by
// other apps and namespaces (a standalone cmd/aelocal serves them all),
// and a flush would empty it for every one of them.
func flushHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "forbidden: the form was posted from another site", http.StatusForbidden)
		return
	}
	// The store keeps a session under its ID (KeyPrefix is empty, and
	// the IDs icza/session makes are far below Memcache's 250-byte key
	// limit, past which the store would hash the key). A session cookie
	// of a session that is gone leaves a tombstone under the same key;
	// dropping that too shows the Datastore no longer has the session.
	if c, err := r.Cookie(sessionCookie); err == nil && gaesession.ValidID(c.Value) && len(c.Value) <= maxMemcacheKey {
		err := memcache.Delete(appengine.NewContext(r), c.Value)
		if err != nil && err != memcache.ErrCacheMiss {
			log.Printf("dropping the session from memcache: %v", err)
			http.Error(w, "dropping the session from memcache failed", http.StatusInternalServerError)
			return
		}
	}
	http.Redirect(w, r, "/demo", http.StatusSeeOther)
}

// sessionCookie is the name of icza/session's cookie (CookieManager's
// default), and maxMemcacheKey Memcache's limit on a key.
const (
	sessionCookie  = "sessid"
	maxMemcacheKey = 250
)

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
	LoggedOut    bool      // the page after a logout
	Sess         *sessData // nil when not logged in
	Local        bool
	APIServer    string
	Instance     string
	RPCs         rpcSummary // locally: what this request cost
}

type sessData struct {
	UserName           string
	Count              int
	Times              string // "time" or "times"
	IDPrefix           string
	Created, Accessed  string
	Timeout            string
	Origin, OriginText string
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gaesession demo</title>
<style>
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 44em; overflow-wrap: anywhere; }
th { text-align: left; padding-right: 1em; font-weight: normal; color: #555; vertical-align: top; }
label { display: inline-block; width: 7em; }
input[type=text], input[type=password] { max-width: 100%; }
.error { color: #b00; }
.notice { background: #e6f4ea; border: 1px solid #b7dfc3; padding: .5em .75em; }
.note { color: #555; font-size: 90%; }
form { margin: 1em 0; }
</style>
</head>
<body>
<h1>gaesession demo</h1>
{{if .InvalidLogin}}<p class="error" id="invalid-login">Invalid user name or password.</p>{{end}}
{{with .Sess}}
<p>Hello <b id="user">{{.UserName}}</b>! Since login you visited this page <b id="count">{{.Count}}</b> {{.Times}}. <a href="/demo">Refresh</a></p>
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
{{if .LoggedOut}}<p class="notice" id="logged-out">You are logged out: the session is deleted from Memcache and the Datastore. Log in again below.</p>{{end}}
<form method="post" action="/demo" id="login">
<label for="UserName">User name:</label> <input type="text" name="UserName" id="UserName" maxlength="100" autofocus><br>
<label for="Password">Password:</label> <input type="password" name="Password" id="Password">
<span class="note">Tip: the password is "a".</span><br>
<input type="submit" name="Login" value="Login">
</form>
{{end}}
{{if .Local}}
<p class="note" id="rpcs" data-rpcs="{{.RPCs.Data}}">This request cost {{.RPCs.Text}}.</p>
{{if .Sess}}<form method="post" action="/demo/flush">
<input type="submit" value="Drop the session from Memcache">
<span class="note">As if Memcache had evicted it: it survives in the Datastore, and the next page says where it was loaded from. Nothing else in Memcache is touched.</span>
</form>{{end}}
<p class="note">Running locally. App Engine API server: <a href="{{.APIServer}}/">{{.APIServer}}</a>.</p>
{{end}}
<p class="note">Served by {{.Instance}}.</p>
</body>
</html>
`))
