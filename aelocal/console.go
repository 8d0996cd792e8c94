package aelocal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// The console is the set of pages at the server's root: what
// dev_appserver's admin console was. It is a client of the services it
// shows: it builds datastore_v3 and memcache requests and hands them to
// the same method table the bridge dispatches to (consoleCall), so what it
// shows is what an app would see, and it never reaches into a service's
// state.
//
// Safety on a developer's machine:
//   - no GET changes anything: every action is a POST form;
//   - every POST carries a token made from a per-server secret and the
//     form's action (HMAC), so another site cannot forge one, and a POST
//     that the browser marks as cross-site (Sec-Fetch-Site) or that comes
//     from another origin (Origin) is refused even with a token;
//   - pages may not be framed, and carry a Content-Security-Policy that
//     allows no script at all (there is none) and forms to this origin
//     only.
//
// Which Host names may reach the server at all is the front door's check,
// applied to every request before it gets here.

//go:embed console
var consoleFiles embed.FS

// consoleSection is one entry of the navigation. Sections are listed in
// consoleSections and each registers its own routes.
type consoleSection struct {
	Name   string
	Path   string
	routes func(c *console, mux *http.ServeMux)
}

// consoleSections is the console's navigation, in order.
var consoleSections = []consoleSection{
	{"Datastore", "/datastore", (*console).datastoreRoutes},
	{"Memcache", "/memcache", (*console).memcacheRoutes},
	{"Task queues", "/taskqueues", (*console).taskqueueRoutes},
	{"Mail", "/mail", (*console).mailRoutes},
	{"Cron", "/cron", (*console).cronRoutes},
	{"Blobstore", "/blobstore", (*console).blobstoreRoutes}, // console_blobstore.go
	{"Logs", "/logs", (*console).logRoutes},                 // console_logs.go
	{"Search", "/search", (*console).searchRoutes},          // console_search.go
	{"RPCs", "/rpcs", (*console).rpcRoutes},
}

// consoleMaxForm bounds a form body: a datastore value may be a megabyte,
// twice that in hex.
const consoleMaxForm = 4 << 20

// console serves the pages. It is an http.Handler.
type console struct {
	s      *Server
	secret []byte
	mux    *http.ServeMux
	nav    []consoleSection

	cronYAML string // path of cron.yaml, "" for none
	appURL   string // the app's base URL, "" if unknown

	mu        sync.Mutex
	cronRuns  map[string]cronRun        // job ID -> its last run from the console
	taskRuns  map[string]taskRunOutcome // queue -> its last task run from the console
	propTypes map[propTypeKey]string
	columns   columnChoices
}

func newConsole(s *Server) *console {
	c := &console{s: s, secret: make([]byte, 32), cronRuns: make(map[string]cronRun), taskRuns: make(map[string]taskRunOutcome), propTypes: make(map[propTypeKey]string)}
	if _, err := rand.Read(c.secret); err != nil {
		panic("aelocal: no randomness for the console's secret: " + err.Error())
	}
	c.nav = consoleSections
	c.mux = http.NewServeMux()
	c.mux.HandleFunc("GET /{$}", c.serveHome)
	c.mux.HandleFunc("GET /console.css", c.serveCSS)
	for _, sec := range c.nav {
		sec.routes(c, c.mux)
	}
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, errors.New("no such page: "+r.URL.Path))
	})
	return c
}

// configure takes the settings of o the console uses. It reads cron.yaml
// now, so that a mistake in it stops the server at once rather than
// surfacing on the cron page.
func (c *console) configure(o *Options) error {
	// configureServices has checked AppURL.
	c.cronYAML, c.appURL = o.CronYAML, strings.TrimRight(o.AppURL, "/")
	if c.cronYAML != "" {
		if _, err := loadCron(c.cronYAML); err != nil {
			return fmt.Errorf("aelocal: %w", err)
		}
	}
	return nil
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script runs on these pages; styles come from this origin only;
	// forms post only here; nobody may frame a page to trick a click.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// post registers a state-changing action: a POST whose form must pass
// checkPost.
func (c *console) post(mux *http.ServeMux, path string, h http.HandlerFunc) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, consoleMaxForm)
		if err := c.checkPost(r, path); err != nil {
			status := http.StatusForbidden
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				status = http.StatusRequestEntityTooLarge
			}
			c.fail(w, r, status, err)
			return
		}
		h(w, r)
	})
	// Any other method, GET above all, changes nothing.
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		c.fail(w, r, http.StatusMethodNotAllowed, fmt.Errorf("%s changes data and takes only a POST from the console's own form", path))
	})
}

// token is the CSRF token of the form that posts to action.
func (c *console) token(action string) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("aelocal console form\x00" + action))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkPost refuses a POST that another site may have sent.
func (c *console) checkPost(r *http.Request, action string) error {
	// Browsers say where a request comes from; a form on another site is
	// refused before its body is even read.
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin":
	default:
		return fmt.Errorf("refused: the browser marked this request %q; console forms work only from the console's own pages", site)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("refused: a form from origin %q may not change this server (%s)", o, r.Host)
		}
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("cannot read the form: %w", err)
	}
	got := r.PostForm.Get("csrf")
	if got == "" || !hmac.Equal([]byte(got), []byte(c.token(action))) {
		return errors.New("refused: the form's token is missing or wrong (reload the page and try again)")
	}
	return nil
}

// consolePage is what every template gets.
type consolePage struct {
	Title   string
	Section string // Name of the current section, for the navigation
	Nav     []consoleSection
	Flash   string // a notice of what the last action did
	Error   string
	Data    any
	c       *console
}

// Token returns the CSRF token of the form that posts to action.
func (p *consolePage) Token(action string) string { return p.c.token(action) }

var consoleTemplates = sync.OnceValue(func() map[string]*template.Template {
	funcs := template.FuncMap{
		"ago":      fmtAgo,
		"duration": fmtDuration,
		"stamp":    func(t time.Time) string { return t.Format("2006-01-02 15:04:05.000 MST") },
		"query":    queryString,
		"add":      func(a, b int) int { return a + b },
		"size":     fmtSize,
		"join":     strings.Join,
	}
	pages, err := fs.Glob(consoleFiles, "console/*.tmpl")
	if err != nil {
		panic(err)
	}
	out := make(map[string]*template.Template)
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "console/"), ".tmpl")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.New("layout.tmpl").Funcs(funcs).ParseFS(consoleFiles, "console/layout.tmpl", p))
	}
	return out
})

// render writes page name with status.
func (c *console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *consolePage) {
	p.c = c
	p.Nav = c.nav
	if p.Flash == "" {
		p.Flash = consoleFlashes[r.URL.Query().Get("done")]
	}
	t := consoleTemplates()[name]
	if t == nil {
		panic("aelocal: no console template " + name)
	}
	if err := writePage(w, r, status, t, p); err != nil {
		log.Printf("aelocal: console page %s: %v", name, err)
	}
}

// writePage executes t with data and writes the page with status, its
// body left out for HEAD. The page is executed in full before anything is
// written, so a template error answers 500 instead of half a page; that
// error is returned too.
func writePage(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) error {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "aelocal: cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, b.String())
	}
	return nil
}

// fail shows err on a page of its own, with the ways back: to the page
// the browser came from, and to the section's first page.
func (c *console) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	c.failBack(w, r, status, err, nil)
}

// consoleLink is a link of an error page.
type consoleLink struct{ Text, URL string }

// errorPage is the data of an error page.
type errorPage struct {
	Heading string
	Message string
	Links   []consoleLink
}

// errorHeadings say in words what a status means to the person who asked.
var errorHeadings = map[int]string{
	http.StatusBadRequest:            "That cannot be done",
	http.StatusForbidden:             "Refused",
	http.StatusNotFound:              "Not found",
	http.StatusMethodNotAllowed:      "Only the console's own buttons do that",
	http.StatusConflict:              "It changed meanwhile",
	http.StatusRequestEntityTooLarge: "Too large",
}

// failBack is fail with more links back: the most specific first.
func (c *console) failBack(w http.ResponseWriter, r *http.Request, status int, err error, links []consoleLink) {
	d := &errorPage{Heading: errorHeadings[status], Message: err.Error()}
	if d.Heading == "" {
		d.Heading = "Something went wrong"
	}
	// The message is the page's own content, under its heading, not the
	// layout's error notice above it: said once.
	page := &consolePage{Title: d.Heading, Data: d}
	// The page the browser came from, if it is one of the console's
	// (Referrer-Policy: same-origin keeps it on other sites' requests).
	// A path that a browser could read as another host's ("//x", "/\x")
	// is not offered.
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && strings.HasPrefix(ref.Path, "/") &&
		!strings.HasPrefix(ref.Path, "//") && !strings.Contains(ref.Path, "\\") && ref.RequestURI() != r.URL.RequestURI() {
		d.Links = append(d.Links, consoleLink{"the previous page", ref.RequestURI()})
	}
	d.Links = append(d.Links, links...)
	for _, sec := range c.nav {
		if r.URL.Path == sec.Path || strings.HasPrefix(r.URL.Path, sec.Path+"/") {
			page.Section = sec.Name
			d.Links = append(d.Links, consoleLink{sec.Name, sec.Path})
		}
	}
	d.Links = append(d.Links, consoleLink{"the console's home page", "/"})
	c.render(w, r, status, "error", page)
}

// consoleFlashes are the notices a redirect after an action may ask for
// with ?done=; only these fixed texts, so that a link cannot put words on
// the page.
var consoleFlashes = map[string]string{
	"saved":       "Saved.",
	"created":     "Entity created.",
	"deleted":     "Deleted.",
	"propdel":     "Property removed.",
	"valuedel":    "Value removed from the list.",
	"colssaved":   "Columns saved for this kind.",
	"colsreset":   "Every column shown again, in alphabetical order.",
	"mcdeleted":   "Memcache key deleted.",
	"mcmissing":   "The key was not in memcache (nothing deleted).",
	"flushed":     "Memcache flushed: every item of every namespace is gone.",
	"reset":       "RPC counts and the call log were reset.",
	"cronran":     "Cron job run; its result is below.",
	"nothingdel":  "Nothing was selected, so nothing was deleted.",
	"taskran":     "Task run; the app's answer is below.",
	"taskdeleted": "Task deleted.",
	"purged":      "Queue purged: every task in it is deleted, and their names may be used again.",
	"mailcleared": "Every message kept was removed.",
	"docdeleted":  "Document deleted.",
}

// redirect answers an action with 303 See Other to path?query&done=flash.
func redirect(w http.ResponseWriter, r *http.Request, path string, q url.Values, flash string) {
	if q == nil {
		q = url.Values{}
	}
	if flash != "" {
		q.Set("done", flash)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// queryString builds "?k=v&..." from pairs, leaving out empty values, for
// links in templates.
func queryString(pairs ...any) template.URL {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		k := fmt.Sprint(pairs[i])
		v := fmt.Sprint(pairs[i+1])
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) == 0 {
		return ""
	}
	return template.URL("?" + q.Encode())
}

func (c *console) serveCSS(w http.ResponseWriter, r *http.Request) {
	b, err := consoleFiles.ReadFile("console/console.css")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(b)
}

// consoleHome is the data of the home page.
type consoleHome struct {
	URL, Host, Port, App string
	Front                string // the app's front end, if any
	RPCs                 int64
	Since                time.Time
	MemcacheItems        uint64
	Kinds                []string
	KindsErr             string
	Queues, Tasks        int
	Mails                int
	Indexes              string // composite indexes queries needed, as text
}

func (c *console) serveHome(w http.ResponseWriter, r *http.Request) {
	host, port := c.s.Addr()
	d := consoleHome{URL: c.s.URL(), Host: host, Port: port, App: os.Getenv("GAE_APPLICATION"), Front: c.s.FrontURL(), Since: c.s.rpcs.countsSince()}
	for _, n := range c.s.Stats() {
		d.RPCs += n
	}
	if st, err := c.memcacheStats(); err == nil {
		d.MemcacheItems = st.Items
	}
	d.App = c.defaultApp()
	kinds, err := c.kinds(d.App, "")
	if err != nil {
		d.KindsErr = err.Error()
	}
	d.Kinds = kinds
	for _, q := range c.s.queueStatuses() {
		d.Queues++
		d.Tasks += q.Tasks
	}
	_, d.Mails = c.s.latestMails(0, 0)
	var indexes strings.Builder
	c.s.writeIndexStatus(&indexes)
	d.Indexes = strings.TrimSpace(indexes.String())
	c.render(w, r, http.StatusOK, "home", &consolePage{Title: "aelocal", Data: d})
}

// consoleCall serves one call of the console through the method table the
// bridge uses. It is not an RPC of the app: it counts in no statistics,
// does not appear in the RPC log, and neither takes an injected failure
// nor waits an injected latency meant for the app.
func (s *Server) consoleCall(service, method string, fill func(in pmsg)) (out pmsg, err error) {
	spec, ok := methods[service+"."+method]
	if !ok {
		return pmsg{}, fmt.Errorf("aelocal does not serve %s.%s", service, method)
	}
	if fn, ok := consoleMethods[service+"."+method]; ok {
		spec.fn = fn
	}
	in, err := newMsg(spec.req)
	if err != nil {
		return pmsg{}, err
	}
	fill(in)
	if out, err = newMsg(spec.resp); err != nil {
		return pmsg{}, err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error serving %s.%s: %v", service, method, p)
		}
	}()
	if err := spec.fn(s, in, out); err != nil {
		var se *serviceError
		if errors.As(err, &se) {
			return pmsg{}, errors.New(se.detail)
		}
		return pmsg{}, err
	}
	// An answer holds stored entities as their bytes (dsEntity.answer):
	// the console reads a decoded copy, which it may also edit before it
	// puts it back.
	return decodedAnswer(out)
}

// consoleMethods serve the console in place of the app's methods where the
// two differ: the console's queries need no composite index from
// index.yaml and are not recorded as needing one, so that browsing neither
// fails under RequireIndexes nor adds indexes the app does not use to the
// app's index.yaml.
var consoleMethods = map[string]methodFunc{
	"datastore_v3.RunQuery": func(s *Server, in, out pmsg) error { return runQuery(s, in, out, false) },
}

// fmtDuration shows d to a precision a person reads at a glance.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// fmtAgo says how far t is from now: "3m20s ago" or "in 2h0m0s".
func fmtAgo(now, t time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d == 0:
		return "now"
	case d < 0:
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}
