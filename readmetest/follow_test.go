//go:build unix

package readmetest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/internal/proctest"
)

const (
	startTimeout = 3 * time.Minute // a go run, until it answers (it may compile first)
	stopTimeout  = 10 * time.Second
	// gaeAppLine is what the README's app lines set, and what the test
	// takes away to see the failure the README describes without it.
	gaeAppLine = " GAE_APPLICATION=dev~aelocal"
	// noAppIDError is the start of what the App Engine client says without
	// GAE_APPLICATION, which README.md quotes.
	noAppIDError = "Metadata fetch failed for 'instance/attributes/gae_project'"
)

// followSteps are the README blocks TestReadmeFollowed runs, by the name
// of their readme-test marker; blocks marked "file PATH" are checked
// against that file of the repository. A command block without a marker,
// or with another one, fails the test: every instruction is tested.
var followSteps = []string{"demo", "clouddemo", "ci", "replace", "gomod", "app", "apptest", "aetest", "standalone", "console", "front", "deploy"}

// TestReadmeFollowed follows README.md as a new user would, in a scratch
// app module of its own: the app is README's Usage handler with README's
// in-test snippet as its test, plus an aetest suite on appengine/v2 and one
// on v1.6.8; a copy of this checkout goes into the app's directory, and
// then the README's command blocks run as written, each line in bash in
// the app's directory (the demo's in the copy), with only the ports
// 10001, 8080 and 8081 and paths under /tmp/ replaced by free ones, so that
// parallel tests cannot collide (an aelocal line without -addr gets one,
// and an app line without PORT the variable, for the default ports):
//
//   - replace: the replace line and go mod tidy; go.mod then has the line
//     README shows;
//   - aetest: go install of cmd/aelocal without a version, then both aetest
//     suites and the in-test snippet through `go test ./...`;
//   - standalone: cmd/aelocal with a datastore file, and the app with the
//     three variables, whose sessions then work; without GAE_APPLICATION
//     the app fails as README says;
//   - console: cmd/aelocal with the app's cron.yaml and queue.yaml;
//   - front: cmd/aelocal before the app as its front end, and the app
//     browsed through it;
//   - deploy: the app's directory alone (what gcloud app deploy uploads)
//     builds where nothing outside it exists;
//   - demo: go run ./_gae_session_demo in the copy of the checkout;
//   - clouddemo: the demo on the Cloud store (the nested module cloud/),
//     in the copy of the checkout.
func TestReadmeFollowed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a scratch app; skipped in -short mode")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("README's commands are shell lines; no bash here")
	}
	blocks := map[string]block{}
	for _, b := range readmeBlocks(t) {
		switch {
		case strings.HasPrefix(b.marker, "file "):
			checkExcerpt(t, b, strings.TrimPrefix(b.marker, "file "))
		case b.marker != "" && !contains(followSteps, b.marker):
			t.Errorf("README.md:%d: unknown readme-test marker %q", b.line, b.marker)
		case b.marker != "":
			if _, dup := blocks[b.marker]; dup {
				t.Errorf("README.md:%d: a second block marked %q", b.line, b.marker)
			}
			blocks[b.marker] = b
		case b.shell():
			t.Errorf("README.md:%d: a command block that no test runs: mark it <!-- readme-test: NAME --> and run it in readmetest/follow_test.go", b.line)
		}
	}
	for _, m := range followSteps {
		if _, ok := blocks[m]; !ok {
			t.Errorf("README.md has no block marked %q any more: this test follows it", m)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	root := repoRoot(t)
	tmp := t.TempDir()
	app := filepath.Join(tmp, "yourapp")
	f := &follower{bash: bash, tmp: tmp, app: app, env: goEnv(t, "GOPATH="+filepath.Join(tmp, "gopath"))}

	t.Run("ci", func(t *testing.T) {
		ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range blocks["ci"].commands() {
			if !strings.Contains(string(ci), "'"+c+"'") {
				t.Errorf(".ci/run does not run README's test command %q", c)
			}
		}
	})

	// Every later step needs these two, so they run whatever -run says.
	f.setup(t, root, blocks)
	f.script(t, blocks["replace"], app)
	gomod, err := os.ReadFile(filepath.Join(app, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range blocks["gomod"].commands() {
		if !strings.Contains(string(gomod), l+"\n") {
			t.Fatalf("go.mod lacks README's line %q:\n%s", l, gomod)
		}
	}
	t.Run("aetest", func(t *testing.T) {
		out := f.script(t, blocks["aetest"], app)
		for _, pkg := range []string{"example.com/yourapp", "example.com/yourapp/v1suite"} {
			if !strings.Contains(out, "ok  \t"+pkg+"\t") {
				t.Errorf("go test did not pass %s:\n%s", pkg, out)
			}
		}
	})
	t.Run("standalone", func(t *testing.T) { f.standalone(t, blocks["standalone"]) })
	t.Run("console", func(t *testing.T) {
		ports := f.ports(t)
		f.start(t, blocks["console"], app, ports)
		f.wantStatus(t, "http://127.0.0.1:"+ports["10001"]+"/", http.StatusOK)
	})
	t.Run("front", func(t *testing.T) {
		ports := f.ports(t)
		f.start(t, blocks["front"], app, ports)
		f.wantVisits(t, "http://127.0.0.1:"+ports["8081"]+"/")
	})
	t.Run("deploy", func(t *testing.T) { f.deploy(t, blocks["deploy"]) })
	t.Run("demo", func(t *testing.T) {
		ports := f.ports(t)
		f.start(t, blocks["demo"], filepath.Join(app, "gaesession"), ports, "PORT="+ports["8080"])
		f.wantStatus(t, "http://127.0.0.1:"+ports["8080"]+"/demo", http.StatusOK)
	})
	t.Run("clouddemo", func(t *testing.T) {
		ports := f.ports(t)
		f.start(t, blocks["clouddemo"], filepath.Join(app, "gaesession"), ports, "PORT="+ports["8080"])
		f.wantStatus(t, "http://127.0.0.1:"+ports["8080"]+"/demo", http.StatusOK)
	})
}

// follower runs README blocks for TestReadmeFollowed.
type follower struct {
	bash string
	tmp  string   // the test's temporary directory; README's /tmp/
	app  string   // the scratch app's directory
	env  []string // for every command: goEnv with a GOPATH of the test's own
}

// setup makes the app the README's commands then work on: a module that
// required the original (as an app switching from it does), its go.sum
// lines, README's Usage handler as main.go and README's in-test snippet as
// handler_test.go, the aetest suites of testdata/yourapp, README's
// app.yaml and cron.yaml excerpts, and a copy of this checkout in
// gaesession/.
func (f *follower) setup(t *testing.T, root string, blocks map[string]block) {
	copyTree(t, root, filepath.Join(f.app, "gaesession"), nil)
	copyTree(t, filepath.Join(root, "readmetest", "testdata", "yourapp"), f.app, nil)
	writeFile(t, filepath.Join(f.app, "go.mod"), `module example.com/yourapp

go 1.23.0

require (
	github.com/icza/gaesession/v2 v2.0.0
	github.com/icza/session v1.3.0
	google.golang.org/appengine v1.6.8
	google.golang.org/appengine/v2 v2.0.6
)
`)
	var sum []byte
	for _, p := range []string{"go.sum", filepath.Join("v1test", "go.sum")} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		sum = append(sum, b...)
	}
	writeFile(t, filepath.Join(f.app, "go.sum"), string(sum))

	main, err := snippetFile(blocks["app"], nil)
	if err != nil {
		t.Fatal(err)
	}
	if main.pkg != "main" || main.prelude != "" || main.name != "snippet.go" {
		t.Fatalf("README.md:%d: Usage is no longer an app's main package of its own (package %s, file %s, free names:\n%s)", blocks["app"].line, main.pkg, main.name, main.prelude)
	}
	writeFile(t, filepath.Join(f.app, "main.go"), main.src)
	test, err := snippetFile(blocks["apptest"], declaredIn(t, main.src))
	if err != nil {
		t.Fatal(err)
	}
	if test.prelude != "" || test.name != "snippet_test.go" {
		t.Fatalf("README.md:%d: the in-test snippet is no longer a test of Usage's handler alone (file %s, free names:\n%s)", blocks["apptest"].line, test.name, test.prelude)
	}
	writeFile(t, filepath.Join(f.app, "handler_test.go"), strings.Replace(test.src, "package snippet", "package main", 1))
	for _, name := range []string{"app.yaml", "cron.yaml"} {
		found := false
		for _, b := range readmeBlocks(t) {
			if b.marker == "file _gae_session_demo/"+name {
				writeFile(t, filepath.Join(f.app, name), b.text)
				found = true
			}
		}
		if !found {
			t.Fatalf("README.md no longer shows the demo's %s", name)
		}
	}
}

// declaredIn returns the names a Go file declares at package level.
func declaredIn(t *testing.T, src string) map[string]bool {
	t.Helper()
	file, err := parseGo(src)
	if err != nil {
		t.Fatal(err)
	}
	return topLevelNames(file)
}

// script runs b's lines as one bash script in dir, stopping at the first
// that fails, and returns the output.
func (f *follower) script(t *testing.T, b block, dir string) string {
	t.Helper()
	cmd := exec.Command(f.bash, "-e", "-c", b.text)
	cmd.Dir, cmd.Env = dir, f.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if unreachable(string(out)) {
			t.Skipf("README.md:%d: the module proxy is out of reach:\n%s", b.line, out)
		}
		t.Fatalf("README.md:%d, in %s:\n%s\nfailed: %v\n%s", b.line, dir, b.text, err, out)
	}
	t.Logf("README.md:%d:\n%s%s", b.line, b.text, out)
	return string(out)
}

// ports picks a free loopback port for each port README's commands name.
func (f *follower) ports(t *testing.T) map[string]string {
	ports := map[string]string{}
	for _, p := range []string{"10001", "8080", "8081"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		ports[p] = port
	}
	return ports
}

// rewrite puts the test's ports and temporary directory into a README line.
func (f *follower) rewrite(line string, ports map[string]string) string {
	pairs := []string{"/tmp/", f.tmp + "/"}
	for from, to := range ports {
		pairs = append(pairs, from, to)
	}
	return strings.NewReplacer(pairs...).Replace(line)
}

// start runs each command line of b in the background, as in a terminal
// of its own, in dir, with extra in the environment, and waits until each
// answers: an aelocal line until it prints its banner, another line (the
// app) until the port 8080 stands for answers. The processes stop when
// the test ends.
func (f *follower) start(t *testing.T, b block, dir string, ports map[string]string, extra ...string) []*proc {
	t.Helper()
	var procs []*proc
	for _, line := range b.commands() {
		line = f.rewrite(line, ports)
		if strings.Contains(line, "cmd/aelocal") && !strings.Contains(line, "-addr") {
			// aelocal's default address, 127.0.0.1:10001, in the
			// test's stand-in for port 10001.
			line += " -addr 127.0.0.1:" + ports["10001"]
		}
		p := f.startLine(t, line, dir, extra...)
		if strings.Contains(line, "cmd/aelocal") {
			p.waitFor(t, "aelocal: App Engine API server at")
		} else {
			p.waitHTTP(t, "http://127.0.0.1:"+ports["8080"]+"/_ah/health")
		}
		procs = append(procs, p)
	}
	return procs
}

// standalone runs README's two terminals of cmd/aelocal and the app: the
// app's sessions work and reach the datastore file; the app line without
// GAE_APPLICATION fails as README says.
func (f *follower) standalone(t *testing.T, b block) {
	ports := f.ports(t)
	// The app's line sets no PORT: the app takes 8080, the test's stand-in.
	procs := f.start(t, b, f.app, ports, "PORT="+ports["8080"])
	f.wantVisits(t, "http://127.0.0.1:"+ports["8080"]+"/")
	if !strings.Contains(procs[0].out.String(), noAppIDError) {
		t.Errorf("aelocal's first lines do not name %q:\n%s", noAppIDError, procs[0].out.String())
	}
	if fi, err := os.Stat(filepath.Join(f.tmp, "ae.db")); err != nil || fi.Size() == 0 {
		t.Errorf("the datastore file: %v, %v", fi, err)
	}

	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), noAppIDError) {
		t.Errorf("README.md no longer quotes %q", noAppIDError)
	}
	cmds := b.commands()
	appLine := cmds[len(cmds)-1]
	if !strings.Contains(appLine, gaeAppLine) {
		t.Fatalf("README.md:%d: the app's line no longer sets%s: %s", b.line, gaeAppLine, appLine)
	}
	port := f.ports(t)["8080"]
	p := f.startLine(t, f.rewrite(strings.Replace(appLine, gaeAppLine, "", 1), ports), f.app, "PORT="+port)
	p.waitHTTP(t, "http://127.0.0.1:"+port+"/_ah/health")
	f.wantStatus(t, "http://127.0.0.1:"+port+"/", http.StatusInternalServerError)
	// The app logs the panic as it answers; the pipe may bring it later.
	p.waitFor(t, noAppIDError)
}

// deploy checks README's deploy line names files the app has, and builds
// the app's directory where nothing outside it exists, as App Engine does
// with what gcloud app deploy uploads.
func (f *follower) deploy(t *testing.T, b block) {
	cmds := b.commands()
	if len(cmds) != 1 || !strings.HasPrefix(cmds[0], "gcloud app deploy") {
		t.Fatalf("README.md:%d: the deploy block is no longer one gcloud app deploy line: %q", b.line, cmds)
	}
	for _, file := range strings.Fields(strings.TrimPrefix(cmds[0], "gcloud app deploy")) {
		if !fileExists(filepath.Join(f.app, file)) {
			t.Errorf("README.md:%d: the app has no %s", b.line, file)
		}
	}
	upload := filepath.Join(t.TempDir(), "upload")
	copyTree(t, f.app, upload, nil)
	runGo(t, upload, f.env, "build", "-o", filepath.Join(t.TempDir(), "app"), ".")
}

// wantVisits visits url twice with a cookie jar, as a browser would, and
// wants Usage's handler to count the visits in the session.
func (f *follower) wantVisits(t *testing.T, url string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	for i := 1; i <= 2; i++ {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("visit %d\n", i); resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("GET %s, visit %d: %s %q, want %q", url, i, resp.Status, body, want)
		}
		// icza/session marks its cookie Secure; a browser sends it to
		// localhost over plain HTTP, the jar does not.
		for _, ck := range resp.Cookies() {
			ck.Secure = false
			jar.SetCookies(resp.Request.URL, []*http.Cookie{ck})
		}
	}
}

func (f *follower) wantStatus(t *testing.T, url string, want int) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s, want %d\n%s", url, resp.Status, want, body)
	}
}

// checkExcerpt wants every line of b in the repository's file at path, in
// the same order: README shows excerpts of the demo's files.
func checkExcerpt(t *testing.T, b block, path string) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(path)))
	if err != nil {
		t.Errorf("README.md:%d: %v", b.line, err)
		return
	}
	lines := strings.Split(string(data), "\n")
	i := 0
	for _, want := range strings.Split(strings.TrimRight(b.text, "\n"), "\n") {
		for i < len(lines) && lines[i] != want {
			i++
		}
		if i == len(lines) {
			t.Errorf("README.md:%d: %s has no line %q (in README's order)", b.line, path, want)
			return
		}
		i++
	}
}

// proc is a README line running in the background.
type proc struct {
	line string
	cmd  *exec.Cmd
	out  *proctest.LockedBuffer
	done chan struct{}
	err  error
}

// startLine starts line in bash, in a process group of its own so that
// go run's program stops with it.
func (f *follower) startLine(t *testing.T, line, dir string, extra ...string) *proc {
	t.Helper()
	p := &proc{line: line, out: &proctest.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(f.bash, "-c", line)
	p.cmd.Dir = dir
	p.cmd.Env = append(append([]string{}, f.env...), extra...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithTest(p.cmd.SysProcAttr)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", line, p.out.String())
		}
	})
	t.Logf("started: %s", line)
	return p
}

// stop ends the process group: SIGTERM, then SIGKILL if it lingers.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor waits until the output has s.
func (p *proc) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(p.out.String(), s) {
		if p.exited() {
			t.Fatalf("%s exited (%v) before it printed %q:\n%s", p.line, p.err, s, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q in %v:\n%s", p.line, s, startTimeout, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHTTP waits until url answers 200.
func (p *proc) waitHTTP(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before %s answered:\n%s", p.line, p.err, url, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer in %v: %v\n%s", p.line, url, startTimeout, err, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
