//go:build unix

package aelocal

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/mail"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/taskqueue"
	"google.golang.org/appengine/v2/user"
)

// TestConsoleInBrowser goes through the console as a person would, in
// headless Chromium: find an entity, edit it (a mistake first), delete it,
// create one, look into memcache and flush it, run a cron job, run a task
// now, delete one and purge the queue, read a mail with an attachment, and
// read the RPC counts. What the pages show is checked against the services
// through the real client.
func TestConsoleInBrowser(t *testing.T) {
	// The app that cron jobs and tasks reach.
	var mu sync.Mutex
	var cronHeaders, taskHeaders []http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/tasks/cleanup":
			cronHeaders = append(cronHeaders, r.Header.Clone())
			w.Write([]byte("cleaned 3 sessions"))
		case "/work/report":
			taskHeaders = append(taskHeaders, r.Header.Clone())
			w.Write([]byte("report for week 12 queued"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer app.Close()
	cronYAML := filepath.Join(t.TempDir(), "cron.yaml")
	os.WriteFile(cronYAML, []byte(`cron:
- description: Delete expired sessions
  url: /tasks/cleanup
  schedule: every 30 minutes
- description: Weekly report
  url: /tasks/report
  schedule: every monday 09:00
  timezone: Europe/Budapest
`), 0o600)

	s, err := NewServerOptions(&Options{CronYAML: cronYAML, AppURL: app.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The server's clock stands still, so that what the pages say of
	// expiry does not depend on how long a loaded machine takes; on a
	// whole second, because Memcache keeps expiry times in whole seconds
	// (stopped within a second, an hour's expiry read 59m59s about half
	// the time).
	s.SetTime(time.Now().Truncate(time.Second))
	ctx := seedConsole(t, s)
	// Tasks due later, so that only the console sends them; a mail with an
	// attachment.
	for i, name := range []string{"report", "reminder", "digest"} {
		task := &taskqueue.Task{Name: name, Path: "/work/" + name, Payload: []byte("week=12"), Delay: time.Duration(i+1) * time.Hour}
		if _, err := taskqueue.Add(ctx, task, ""); err != nil {
			t.Fatal(err)
		}
	}
	err = mail.Send(ctx, &mail.Message{
		Sender: "reports@example.com", To: []string{"boss@example.com"}, Subject: "Weekly report",
		Body: "See the attached figures.", HTMLBody: "<p>See the <b>attached</b> figures.</p>",
		Attachments: []mail.Attachment{{Name: "figures.csv", Data: []byte(strings.Repeat("1,2,3\n", 500))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := startBrowser(t, 1280, 900)

	// The root is the console; the datastore lists kinds with counts.
	b.open(s.URL() + "/")
	b.see("aelocal", "export API_HOST=")
	b.findText("a", "Datastore").click()
	b.see("Book", "Publisher", "tenant-a")
	if got := b.find(`td[data-label="Entities"]`).text(); got != "6" {
		t.Fatalf("Book count shows %q, want 6", got)
	}
	b.findText("a", "Book").click()
	b.see("Entities 1–6 of 6", "Dune", "Neuromancer")

	// Sort by Year, then descending.
	b.findText("a", "Year").click()
	if got := b.find("table.entities tbody tr td:nth-child(2)").text(); got != "/Book,2" {
		t.Fatalf("sorted by Year, the first entity is %s, want /Book,2 (1965)", got)
	}
	b.findText("a", "Year").click()
	if got := b.find("table.entities tbody tr td:nth-child(2)").text(); got != "/Book,1" {
		t.Fatalf("sorted by Year descending, the first entity is %s, want /Book,1 (2015)", got)
	}

	// Find: Year >= 1984 (the type comes from the data), then one title.
	b.find(`input[name="fprop"]`).fill("Year")
	b.find(`select[name="fop"]`).choose(">=")
	b.find(`input[name="fval"]`).fill("1984")
	b.findText("button", "Filter").click()
	b.see("Entities 1–4 of 4", "matching Year >= 1984", "Neuromancer")
	b.notSee("Dune")
	b.find(`input[name="fprop"]`).fill("Title")
	b.find(`select[name="fop"]`).choose("=")
	b.find(`input[name="fval"]`).fill("Neuromancer")
	b.findText("button", "Filter").click()
	b.see("Entities 1–1 of 1")
	b.findText("a", "/Book,3").click()

	// The entity, with its types.
	b.see("/Book,3", "William Gibson", "1984", "int", "time", "2024-01-04T10:30:00Z",
		"bytes", "89 50 4e 47 02", "key", `/Publisher,"penguin"`, "geopt", "text", "cyberpunk")

	// Edit Price: a value that is no number is refused, clearly.
	b.find(`a[aria-label="edit Price"]`).click()
	if got := b.find(`input[name="value"]`).value(); got != "8.5" {
		t.Fatalf("the edit form shows %q, want 8.5", got)
	}
	b.find(`input[name="value"]`).fill("cheap")
	b.findText("button", "Save").click()
	b.see(`"cheap" is not a number`)
	b.find(`input[name="value"]`).fill("7.25")
	b.findText("button", "Save").click()
	b.see("Saved.", "7.25")
	var got consoleBook
	key := datastore.NewKey(ctx, "Book", "", 3, nil)
	if err := datastore.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	if got.Price != 7.25 || got.Title != "Neuromancer" || len(got.Tags) != 2 || string(got.Cover) != "\x89PNG\x02" || got.Summary == "" {
		t.Fatalf("after the edit the app reads %+v", got)
	}

	// Delete it.
	b.findText("button", "Delete entity").click()
	b.see("Deleted.", "Book")
	if err := datastore.Get(ctx, key, &got); err != datastore.ErrNoSuchEntity {
		t.Fatalf("after delete, Get = %v, want ErrNoSuchEntity", err)
	}
	b.see("Entities 1–5 of 5")
	b.notSee("Neuromancer")

	// Create one, with a mistake first.
	b.findText("a", "New entity").click()
	b.find(`input[name="id"]`).fill("hyperion")
	fillRow := func(name, value string) {
		for i := 0; ; i++ {
			in := b.find(`input[aria-label="property ` + strconv.Itoa(i+1) + ` name"]`)
			if in.value() == name {
				b.find(`input[aria-label="property ` + strconv.Itoa(i+1) + ` value"]`).fill(value)
				return
			}
		}
	}
	fillRow("Title", "Hyperion")
	fillRow("Year", "nineteen")
	b.findText("button", "Create").click()
	b.see(`property Year: "nineteen" is not an integer`)
	fillRow("Year", "1989")
	b.findText("button", "Create").click()
	b.see("Entity created.", `/Book,"hyperion"`, "Hyperion", "1989")
	var h consoleBook
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Book", "hyperion", 0, nil), &h); err != nil || h.Year != 1989 {
		t.Fatalf("the created entity reads %+v, %v", h, err)
	}

	// Memcache: stats, a lookup, flush.
	b.findText("a", "Memcache").click()
	if got := b.find("#mc-items").text(); got != "2" {
		t.Fatalf("memcache items show %q, want 2", got)
	}
	b.find(`input[name="key"]`).fill("greeting")
	b.findText("button", "Look up").click()
	b.see("hello, console", "(text)")
	if got := b.find("#mc-expires").text(); !strings.HasSuffix(got, "(in 1h0m0s)") {
		t.Fatalf("expiry shows %q, want an hour from now", got)
	}
	b.findText("button", "Flush all").click()
	b.see("Memcache flushed")
	if got := b.find("#mc-items").text(); got != "0" {
		t.Fatalf("after the flush memcache items show %q, want 0", got)
	}
	if _, err := memcache.Get(ctx, "greeting"); err != memcache.ErrCacheMiss {
		t.Fatalf("after the flush Get = %v, want ErrCacheMiss", err)
	}

	// Cron: the jobs, one run.
	b.findText("a", "Cron").click()
	b.see("Delete expired sessions", "every 30 minutes", "Weekly report", "every monday 09:00", "Europe/Budapest")
	b.find(`button[aria-label="run /tasks/cleanup now"]`).click()
	b.see("Cron job run", "200 OK", "cleaned 3 sessions")
	mu.Lock()
	if len(cronHeaders) != 1 || cronHeaders[0].Get("X-Appengine-Cron") != "true" {
		t.Fatalf("the app got %d cron requests, headers %v; want one with X-Appengine-Cron: true", len(cronHeaders), cronHeaders)
	}
	mu.Unlock()
	b.find(`button[aria-label="run /tasks/report now"]`).click()
	b.see("404 Not Found")

	// Task queues: run one now and see it reach the app, delete one, purge.
	b.findText("a", "Task queues").click()
	b.see("3 tasks waiting in 1 queue", "default")
	b.findText("a", "default").click()
	b.see("Tasks 1–3 of 3, in the order they would run.", "/work/report", "/work/reminder", "/work/digest")
	b.find(`button[aria-label="run report now"]`).click()
	b.see("Task run; the app", "200 OK", "The task is deleted.", "Tasks 1–2 of 2")
	if got := b.find("#last-run-body").text(); got != "report for week 12 queued" {
		t.Fatalf("after Run now the page shows the app's answer as %q", got)
	}
	mu.Lock()
	if len(taskHeaders) != 1 || taskHeaders[0].Get("X-AppEngine-TaskName") != "report" || taskHeaders[0].Get("X-AppEngine-QueueName") != "default" {
		t.Fatalf("the app got %d task requests: %v; want report's", len(taskHeaders), taskHeaders)
	}
	mu.Unlock()
	b.find(`button[aria-label="run reminder now"]`).click()
	b.see("404 Not Found", "It stays in the queue: retry 1")
	b.find(`button[aria-label="delete digest"]`).click()
	b.see("Task deleted.", "Tasks 1–1 of 1")
	b.notSee("/work/digest")
	b.findText("a", "reminder").click()
	b.see("week=12", "the last run answered 404")
	b.findText("a", "default").click()
	b.findText("button", "Purge queue").click()
	b.see("Queue purged", "No tasks.")
	if ts := s.Tasks(""); len(ts) != 0 {
		t.Fatalf("after the purge the queue holds %v", ts)
	}

	// Mail: the message, its attachment by name and size, the HTML as text.
	b.findText("a", "Mail").click()
	b.see("Messages 1–1 of 1", "Weekly report", "reports@example.com", "boss@example.com",
		"figures.csv", "2.9 KiB (3000 bytes)", "See the attached figures.", "<p>See the <b>attached</b> figures.</p>")
	if n := b.count("article.mail b"); n != 0 {
		t.Fatal("the HTML body was rendered, not shown as text")
	}

	// RPCs: the app's calls (the test's own client calls), not the console's.
	s.FailNext("memcache", "Get", 1)
	memcache.Get(ctx, "greeting")
	b.findText("a", "RPCs").click()
	b.see("datastore_v3", "Put", "Get", "memcache", "Set")
	b.notSee("RunQuery", "FlushAll", "Stats")
	// A failure is counted for its method and found with one click, its
	// error code named.
	b.find(`a[aria-label="failed calls of memcache.Get"]`).click()
	b.see("shown: failed calls of memcache.Get", "UNSPECIFIED_ERROR: aelocal: injected failure of memcache.Get")
	if n := b.count("#rpc-log tbody tr"); n != 1 {
		t.Fatalf("the failed calls of memcache.Get are %d rows, want 1", n)
	}
	b.findText("a", "All calls").click()
	b.see("datastore_v3.Put")

	// An error page says what is wrong once, and leads back.
	b.findText("a", "Datastore").click()
	b.find(`input[name="key"]`).fill("abcd")
	b.findText("button", "Open").click()
	b.see("That cannot be done", `"abcd" is not an encoded key`)
	b.notSee("wire-format", "Bad Request")
	b.findText("a", "the previous page").click()
	b.see("Namespaces", "Kinds in the default namespace")

	// A list property: Remove on one item removes that item only.
	b.open(s.URL() + "/datastore/entity?key=" + datastore.NewKey(ctx, "Book", "", 1, nil).Encode())
	b.find(`button[aria-label="remove Tags [0]"]`).click()
	b.see("Value removed from the list.", "programming")
	var first consoleBook
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Book", "", 1, nil), &first); err != nil || len(first.Tags) != 1 || first.Tags[0] != "programming" {
		t.Fatalf("after removing Tags [0] the app reads %+v, %v", first.Tags, err)
	}

	// A long value: the entity's page shows its start, and a link shows
	// it all.
	text := strings.Repeat("All work and no play makes Jack a dull boy.\n", 12000)
	docKey := datastore.NewKey(ctx, "Doc", "shining", 0, nil)
	if _, err := datastore.Put(ctx, docKey, &datastore.PropertyList{{Name: "Body", Value: text, NoIndex: true}}); err != nil {
		t.Fatal(err)
	}
	b.open(s.URL() + "/datastore/entity?key=" + docKey.Encode())
	b.see("more (515.6 KiB in all)")
	var height int
	b.script("return document.documentElement.scrollHeight", &height)
	if height > 3000 {
		t.Fatalf("the page of an entity with a 528 KB text is %d px tall", height)
	}
	b.findText("a", "Show it all").click()
	var shown int
	b.script("return document.body.innerText.length", &shown)
	if shown < len(text)-100 {
		t.Fatalf("Show it all shows %d of %d characters", shown, len(text))
	}

	// Columns: pick three, in an order; the choice holds when the kind
	// is opened again; sorting by another property shows it too.
	b.open(s.URL() + "/datastore/kind?kind=Book")
	b.find("details.columns summary").click()
	for _, p := range []string{"Added", "Cover", "InPrint", "Price", "Publisher", "Shelf", "Summary", "Tags"} {
		b.find(`input[aria-label="show ` + p + `"]`).click()
	}
	b.find(`input[aria-label="position of Year"]`).fill("1")
	b.find(`input[aria-label="position of Title"]`).fill("2")
	b.find(`input[aria-label="position of Author"]`).fill("3")
	b.findText("button", "Save columns").click()
	b.see("Columns saved for this kind.")
	headers := func() string {
		var hs []string
		b.script(`return Array.from(document.querySelectorAll("table.entities th")).slice(2).map(th => th.textContent.replace(/[▲▼]/g, "").trim())`, &hs)
		return strings.Join(hs, ",")
	}
	if got := headers(); got != "Year,Title,Author" {
		t.Fatalf("the chosen columns show as %s", got)
	}
	b.findText("a", "Datastore").click()
	b.findText("a", "Book").click()
	b.see("Entities 1–6 of 6")
	if got := headers(); got != "Year,Title,Author" {
		t.Fatalf("opened again, the columns are %s", got)
	}
	b.find(`select[name="sort"]`).choose("Price")
	b.findText("button", "Filter").click()
	b.see("Sorted by Price.")
	if got := headers(); got != "Price,Year,Title,Author" {
		t.Fatalf("sorted by Price, the columns are %s", got)
	}

	// A task with a long name and URL at 1280 px: its Run now and Delete
	// buttons are on screen, and the page is no wider than the window.
	long := &taskqueue.Task{Name: "nightly-export-" + strings.Repeat("0123456789", 5), Path: "/work/export?tenant=" + strings.Repeat("abcdefghij", 8), Delay: time.Hour}
	if _, err := taskqueue.Add(ctx, long, ""); err != nil {
		t.Fatal(err)
	}
	b.open(s.URL() + "/taskqueues/queue?name=default")
	for _, button := range []string{"run " + long.Name + " now", "delete " + long.Name} {
		var fits bool
		b.script(`const r = document.querySelector('button[aria-label="`+button+`"]').getBoundingClientRect();
			return r.left >= 0 && r.right <= document.documentElement.clientWidth`, &fits)
		if !fits {
			t.Fatalf("at 1280 px the button %q is off screen", button)
		}
	}
	var wide bool
	b.script("return document.documentElement.scrollWidth > document.documentElement.clientWidth", &wide)
	if wide {
		t.Fatal("at 1280 px the task list is wider than the window")
	}

	// A narrow window: the listing fits without scrolling sideways.
	b.resize(390, 844)
	for _, page := range []string{"/datastore/kind?kind=Book", "/taskqueues", "/mail"} {
		b.open(s.URL() + page)
		var overflow bool
		b.script("return document.documentElement.scrollWidth > window.innerWidth", &overflow)
		if overflow {
			t.Fatalf("on a 390 px wide window %s is wider than the window", page)
		}
	}
}

// TestConsoleScreenshot makes the README's picture of the datastore viewer
// when AELOCAL_SCREENSHOT names the PNG to write:
//
//	AELOCAL_SCREENSHOT=$PWD/docs/console-datastore.png go test -run TestConsoleScreenshot ./aelocal
func TestConsoleScreenshot(t *testing.T) {
	out := os.Getenv("AELOCAL_SCREENSHOT")
	if out == "" {
		t.Skip("set AELOCAL_SCREENSHOT to the PNG file to write")
	}
	s := newTestServer(t)
	seedConsole(t, s)
	b := startBrowser(t, 1840, 800)
	b.open(s.URL() + "/datastore/kind?kind=Book&sort=Year&fprop=Year&fop=ge&fval=1965")
	b.see("Entities 1–6 of 6")
	if err := os.WriteFile(out, b.screenshot(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoginInBrowser signs in and out in headless Chromium, as a person
// would, on an app run on its own behind the front end: the app sees the
// user through appengine/v2 alone. It signs in once on the front end's
// page and once on the server's own, whose form sends the browser on to
// the app's origin.
func TestLoginInBrowser(t *testing.T) {
	_, s := echoBehindFront(t)
	ctx := middlewareContext(t, s)
	front := s.FrontURL()
	b := startBrowser(t, 1024, 768)

	b.open(front + "/start")
	b.see("nobody", "path=/start")
	login, err := user.LoginURL(ctx, "/after")
	if err != nil {
		t.Fatal(err)
	}
	b.open(login)
	b.see("Log in", "You are not signed in.", "Back to the app", "Then you go to "+front+"/after")
	// The console's style, inlined on the front end's origin, applies
	// (the header's dark bar), and only the action that applies is offered.
	var bg string
	b.script(`return getComputedStyle(document.querySelector("header")).backgroundColor`, &bg)
	if bg != "rgb(32, 33, 36)" {
		t.Errorf("the login page's header has background %q: the console's style did not apply", bg)
	}
	if n := b.count("button"); n != 1 {
		t.Errorf("the login page offers %d buttons, want only Log in", n)
	}
	b.find(`input[name="email"]`).fill("juliet@example.org")
	b.find(`input[name="admin"]`).click()
	b.findText("button", "Log in").click()
	b.see("juliet@example.org admin=true", "path=/after")

	// A GET of the logout URL only asks.
	logout, _ := user.LogoutURL(ctx, "/bye")
	b.open(logout)
	b.see("Log out", "You are signed in as juliet@example.org (administrator).")
	b.open(front + "/check")
	b.see("juliet@example.org admin=true", "path=/check")
	b.open(logout)
	if n := b.count("button"); n != 1 {
		t.Errorf("the logout page offers %d buttons, want only Log out", n)
	}
	b.findText("button", "Log out").click()
	b.see("nobody", "path=/bye")
	// Signed out, the logout page has nothing to do but lead back.
	b.open(logout)
	b.see("There is nobody to log out.")
	b.findText("a", "Back to the app").click()
	b.see("nobody", "path=/bye")

	// A login link that would send the user elsewhere afterwards stops
	// at the page, which says why.
	b.open(front + "/_ah/login?continue=" + url.QueryEscape("https://elsewhere.example/"))
	b.see("https://elsewhere.example/", "not this app's")
	if n := b.count("form"); n != 0 {
		t.Errorf("the login page offers %d forms for a foreign continue URL", n)
	}

	// The server's own login page, sending the browser on to the app.
	b.open(s.URL() + "/_ah/login?continue=" + url.QueryEscape(front+"/back"))
	b.find(`input[name="email"]`).fill("romeo@example.org")
	b.findText("button", "Log in").click()
	b.see("romeo@example.org admin=false", "path=/back")
}
