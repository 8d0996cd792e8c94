//go:build unix

package aelocal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A small client of the W3C WebDriver protocol, enough to drive headless
// Chromium through Debian's chromedriver from a test with nothing but
// net/http: no browser download, no module of its own.

// chromiumFlags start Chromium headless and quiet: without the
// background-networking flags it tries to reach Google's servers, which a
// closed network refuses.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--disable-extensions", "--lang=en-US",
}

// webElementKey names an element reference in WebDriver's JSON.
const webElementKey = "element-6066-11e4-a52e-4f735466cecf"

type browser struct {
	t    testing.TB
	base string // chromedriver's session URL
}

// findBrowser returns the paths of Chromium and chromedriver. Without
// them the test is skipped, except in CI, which installs them (.ci/run),
// so that there the browser test always runs.
func findBrowser(t testing.TB) (chromium, driver string) {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	driver, _ = exec.LookPath("chromedriver")
	if chromium == "" || driver == "" {
		msg := "Chromium or chromedriver not found: install the Debian packages chromium and chromium-driver (.ci/run does) to run the browser tests"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return chromium, driver
}

// startBrowser starts chromedriver and a headless Chromium with a fresh
// profile; both end when the test does.
func startBrowser(t testing.TB, width, height int) *browser {
	t.Helper()
	chromium, driver := findBrowser(t)
	dir := t.TempDir()
	port := chromedriverPort(t)
	cmd := exec.Command(driver, "--port="+strconv.Itoa(port), "--log-path="+filepath.Join(dir, "chromedriver.log"))
	// A process group of its own, so that ending it ends Chromium too,
	// whatever state the test stopped in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromedriver: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(root + "/status")
		if err == nil {
			var st struct {
				Value struct{ Ready bool }
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Value.Ready {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	args := append([]string{
		"--user-data-dir=" + filepath.Join(dir, "profile"),
		fmt.Sprintf("--window-size=%d,%d", width, height),
	}, chromiumFlags...)
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":        "chrome",
		"pageLoadStrategy":   "normal",
		"goog:chromeOptions": map[string]any{"binary": chromium, "args": args},
	}}}
	var sess struct{ SessionID string }
	if err := wdDo(http.MethodPost, root+"/session", caps, &sess); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "chromedriver.log"))
		t.Fatalf("starting Chromium: %v\n%s", err, tail(string(log), 3000))
	}
	b := &browser{t: t, base: root + "/session/" + sess.SessionID}
	t.Cleanup(func() { wdDo(http.MethodDelete, b.base, nil, nil) })
	b.do(http.MethodPost, "/timeouts", map[string]any{"implicit": 10000, "pageLoad": 60000, "script": 10000}, nil)
	return b
}

func chromedriverPort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// wdDo sends one WebDriver command and decodes its "value" into out.
func wdDo(method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else if method == http.MethodPost {
		rd = strings.NewReader("{}")
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct{ Value json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s %s: HTTP %d, undecodable answer: %v", method, url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		json.Unmarshal(env.Value, &e)
		return fmt.Errorf("%s: %s", e.Error, firstLine(e.Message))
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func (b *browser) do(method, path string, body, out any) {
	b.t.Helper()
	if err := wdDo(method, b.base+path, body, out); err != nil {
		b.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
}

// open loads url and waits for it.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(http.MethodPost, "/url", map[string]string{"url": url}, nil)
}

func (b *browser) url() string {
	b.t.Helper()
	var u string
	b.do(http.MethodGet, "/url", nil, &u)
	return u
}

// element is a found element.
type element struct {
	b  *browser
	id string
	by string // the selector, for messages
}

// find returns the element that the CSS selector matches, waiting for it
// up to the implicit timeout (10 s).
func (b *browser) find(css string) *element {
	b.t.Helper()
	return b.findBy("css selector", css)
}

// findText returns the element of type tag whose text is text (a link or
// a button, as a person looks for one).
func (b *browser) findText(tag, text string) *element {
	b.t.Helper()
	return b.findBy("xpath", fmt.Sprintf("//%s[normalize-space(.)=%s]", tag, xpathString(text)))
}

func (b *browser) findBy(using, value string) *element {
	b.t.Helper()
	var ref map[string]string
	if err := wdDo(http.MethodPost, b.base+"/element", map[string]string{"using": using, "value": value}, &ref); err != nil {
		b.t.Fatalf("finding %s on %s: %v\npage text:\n%s", value, b.url(), err, b.text())
	}
	return &element{b: b, id: ref[webElementKey], by: value}
}

// count returns how many elements the CSS selector matches now.
func (b *browser) count(css string) int {
	b.t.Helper()
	b.do(http.MethodPost, "/timeouts", map[string]any{"implicit": 0}, nil)
	defer b.do(http.MethodPost, "/timeouts", map[string]any{"implicit": 10000}, nil)
	var refs []map[string]string
	b.do(http.MethodPost, "/elements", map[string]string{"using": "css selector", "value": css}, &refs)
	return len(refs)
}

// text is the visible text of the page.
func (b *browser) text() string {
	var ref map[string]string
	if err := wdDo(http.MethodPost, b.base+"/element", map[string]string{"using": "css selector", "value": "body"}, &ref); err != nil {
		return "(no page: " + err.Error() + ")"
	}
	var s string
	wdDo(http.MethodGet, b.base+"/element/"+ref[webElementKey]+"/text", nil, &s)
	return s
}

// see fails the test unless the page shows every one of want within
// seconds: a click that loads a page may return before the new page is
// there, and a shared machine may be slow.
func (b *browser) see(want ...string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		text := b.text()
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("page %s does not show %q; it shows:\n%s", b.url(), missing, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notSee fails the test if the page shows any of these.
func (b *browser) notSee(unwanted ...string) {
	b.t.Helper()
	text := b.text()
	for _, w := range unwanted {
		if strings.Contains(text, w) {
			b.t.Fatalf("page %s shows %q; it shows:\n%s", b.url(), w, text)
		}
	}
}

// script runs JavaScript in the page through the driver (the console has
// none of its own) and returns its result.
func (b *browser) script(js string, out any) {
	b.t.Helper()
	b.do(http.MethodPost, "/execute/sync", map[string]any{"script": js, "args": []any{}}, out)
}

func (b *browser) resize(width, height int) {
	b.t.Helper()
	b.do(http.MethodPost, "/window/rect", map[string]int{"width": width, "height": height}, nil)
}

// screenshot returns a PNG of the window.
func (b *browser) screenshot() []byte {
	b.t.Helper()
	var s string
	b.do(http.MethodGet, "/screenshot", nil, &s)
	png, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b.t.Fatal(err)
	}
	return png
}

func (e *element) click() {
	e.b.t.Helper()
	e.b.do(http.MethodPost, "/element/"+e.id+"/click", nil, nil)
}

// fill replaces the text of an input or textarea.
func (e *element) fill(text string) {
	e.b.t.Helper()
	e.b.do(http.MethodPost, "/element/"+e.id+"/clear", nil, nil)
	if text != "" {
		e.b.do(http.MethodPost, "/element/"+e.id+"/value", map[string]string{"text": text}, nil)
	}
}

// choose picks the option of a select whose text is text.
func (e *element) choose(text string) {
	e.b.t.Helper()
	var ref map[string]string
	if err := wdDo(http.MethodPost, e.b.base+"/element/"+e.id+"/element",
		map[string]string{"using": "xpath", "value": "./option[normalize-space(.)=" + xpathString(text) + "]"}, &ref); err != nil {
		e.b.t.Fatalf("select %s has no option %q: %v", e.by, text, err)
	}
	e.b.do(http.MethodPost, "/element/"+ref[webElementKey]+"/click", nil, nil)
}

func (e *element) text() string {
	e.b.t.Helper()
	var s string
	e.b.do(http.MethodGet, "/element/"+e.id+"/text", nil, &s)
	return s
}

func (e *element) value() string {
	e.b.t.Helper()
	var s string
	e.b.do(http.MethodGet, "/element/"+e.id+"/property/value", nil, &s)
	return s
}

// xpathString quotes s for an XPath expression.
func xpathString(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	if !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	parts := strings.Split(s, `"`)
	return `concat("` + strings.Join(parts, `", '"', "`) + `")`
}
