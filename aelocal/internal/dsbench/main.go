// Command dsbench measures aelocal's datastore at a kind's size, as issue
// 25's table does: it starts cmd/aelocal as a child process with a
// datastore file, loads N entities of ten indexed properties through the
// real appengine/v2 client over the API port (PutMulti of 500), then times
// through the same client
//
//   - the limit-20 queries: the kind, an equality filter matching ~1%, an
//     order by a time (descending), the page after a cursor taken at N/2;
//   - a GetMulti of 100 keys, a Put alone, and a Put while another
//     goroutine runs those queries and Count back to back;
//   - Count of the kind, and a walk of the whole kind by cursor in pages
//     of 1,000 (-walk);
//   - a restart from the file: the server stopped with SIGTERM and started
//     again on the same file, timed from the start of the process to the
//     line that says it answers, and the first query after it;
//   - the server's resident set (VmRSS in /proc/PID/status, Linux only):
//     after the load and after the queries, less the RSS of the same
//     server empty, per entity; and after the restart;
//   - the server's CPU time (/proc/PID/stat, Linux only) during the load
//     and the restart, which a busy machine stretches less than it does
//     wall times.
//
// From the repository's root:
//
//	go run ./aelocal/internal/dsbench -n 1000,10000,100000
//
// Each time is the median of -reps runs, in milliseconds. -bin runs a
// built aelocal instead of building cmd/aelocal from this tree (to compare
// two versions with the same bench). -gogc sets GOGC in the server's
// environment only (issue 25 compares settings of the collector). -api
// measures a server already running instead, such as the reference
// server on Google's Python SDK stubs (../shared/tools/pystub_server.py):
// it is reset (POST /reset) before each size, there is no file and no
// restart, and -pid names the process whose RSS and CPU to read. Client
// and server share the machine, so its load moves the figures; compare
// runs made close together.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout); err != nil {
		log.Fatalf("dsbench: %v", err)
	}
}

// run measures with the command line args and writes the table to w.
func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("dsbench", flag.ContinueOnError)
	sizes := fs.String("n", "1000,10000,100000", "comma-separated kind sizes to measure, each in a fresh server")
	reps := fs.Int("reps", 20, "runs of each timed call; the median is reported")
	bin := fs.String("bin", "", "aelocal binary to run (empty: build cmd/aelocal from this tree)")
	walk := fs.Bool("walk", false, "also walk the whole kind by cursor in pages of 1,000")
	gogc := fs.String("gogc", "", "GOGC in the server's environment only (empty: the server inherits dsbench's environment)")
	api := fs.String("api", "", "host:port of a running API server to measure instead (reset before each size; no restart)")
	pid := fs.Int("pid", 0, "with -api: the server's process ID, for its RSS and CPU")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 200 {
			return fmt.Errorf("-n %q: sizes are integers of at least 200", s)
		}
		ns = append(ns, n)
	}
	if *reps < 1 {
		return fmt.Errorf("-reps %d: at least 1", *reps)
	}
	dir, err := os.MkdirTemp("", "dsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *api == "" && *bin == "" {
		*bin = filepath.Join(dir, "aelocal")
		build := exec.Command("go", "build", "-o", *bin, "github.com/icza/gaesession/v2/cmd/aelocal")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building cmd/aelocal: %v", err)
		}
	}
	var results []*result
	for _, n := range ns {
		var r *result
		var err error
		if *api != "" {
			r, err = measureRunning(*api, *pid, n, *reps, *walk)
		} else {
			r, err = measure(*bin, dir, n, *reps, *walk, *gogc)
		}
		if err != nil {
			return fmt.Errorf("n=%d: %v", n, err)
		}
		results = append(results, r)
	}
	printTable(w, results)
	return nil
}

// row is the measured entity: ten indexed properties, about 500 bytes in
// the datastore file with its key.
type row struct {
	Name    string
	Group   int64 // i % 100: an equality filter on it matches 1%
	Created time.Time
	Score   float64
	Active  bool
	Email   string
	City    string
	Count   int64
	Tag     string
	Note    string
}

// newRow is the entity of ID i+1 of a kind of n.
func newRow(i, n int) row {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return row{
		Name:    "name-" + strconv.Itoa(i),
		Group:   int64(i % 100),
		Created: base.Add(time.Duration(i*7919%n) * time.Second),
		Score:   float64(i%1000) / 7,
		Active:  i%2 == 0,
		Email:   "user" + strconv.Itoa(i) + "@example.com",
		City:    "city-" + strconv.Itoa(i%50),
		Count:   int64(i),
		Tag:     "tag-" + strconv.Itoa(i%10),
		Note:    "a somewhat longer note about row " + strconv.Itoa(i) + ", to bring the entity to the size of a typical one; " + strings.Repeat("x", 160),
	}
}

// result is what measure found at one size; times in milliseconds, sizes
// in bytes.
type result struct {
	n                             int
	fileBytes                     int64
	loadMs                        float64
	kind, equality, order, cursor float64
	get100, put, putDuringQueries float64
	count, walk                   float64
	restartMs, firstQueryMs       float64
	rssEmpty, rssLoaded           int64
	rssQueried, rssRestarted      int64
	loadCPU, restartCPU           time.Duration // the server's CPU time (user and system)
}

// server is a running cmd/aelocal, or (cmd nil) a server dsbench did not
// start.
type server struct {
	cmd  *exec.Cmd
	pid  int
	port string
	done chan error
}

// start runs bin on the datastore file path and returns once it answers;
// gogc, if not empty, is its GOGC (the bench's own collector and the go
// build keep theirs).
func start(bin, path, gogc string) (*server, error) {
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-datastore_path", path)
	if gogc != "" {
		cmd.Env = append(os.Environ(), "GOGC="+gogc)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, done: make(chan error, 1)}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		line := lines.Text()
		if rest, ok := strings.CutPrefix(line, "export API_HOST="); ok {
			if _, port, ok := strings.Cut(rest, " API_PORT="); ok {
				s.port, _, _ = strings.Cut(port, " ")
				break
			}
		}
	}
	if s.port == "" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s printed no API_PORT line", bin)
	}
	go func() {
		io.Copy(io.Discard, out)
		s.done <- cmd.Wait()
	}()
	return s, nil
}

// stop ends the server gracefully (SIGTERM) and waits for it.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		return errors.New("aelocal did not stop within a minute of SIGTERM")
	}
}

// rss returns the server's resident set in bytes (0 where /proc has no
// VmRSS, off Linux).
func (s *server) rss() int64 {
	if s.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu returns the CPU time the server has used, user and system (0 where
// /proc has no stat, off Linux). Machines shared with other work stretch
// wall times far more than CPU times, so the collector's settings are
// compared by both.
func (s *server) cpu() time.Duration {
	if s.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	// The fields after the command's name in parentheses, from the
	// third: utime and stime are the 14th and 15th, in clock ticks of
	// 1/100 s (USER_HZ, 100 on Linux's usual builds).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// context returns an App Engine context whose calls go to s over its API
// port, made by the real appengine.Middleware as an app's are.
func (s *server) context() context.Context {
	os.Setenv("API_HOST", "127.0.0.1")
	os.Setenv("API_PORT", s.port)
	if os.Getenv("GAE_APPLICATION") == "" {
		os.Setenv("GAE_APPLICATION", "dev~aelocal")
	}
	var ctx context.Context
	appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = appengine.NewContext(r)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	return ctx
}

// median runs f reps times and returns the median time in milliseconds.
func median(reps int, f func() error) (float64, error) {
	ts := make([]float64, 0, reps)
	for range reps {
		began := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ts = append(ts, float64(time.Since(began))/1e6)
	}
	slices.Sort(ts)
	return ts[len(ts)/2], nil
}

// measure loads n rows into a fresh server and takes every figure.
func measure(bin, dir string, n, reps int, walk bool, gogc string) (*result, error) {
	r := &result{n: n}
	path := filepath.Join(dir, fmt.Sprintf("ds-%d", n))
	defer os.Remove(path)
	s, err := start(bin, path, gogc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if s != nil {
			s.stop()
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the new process settle
	r.rssEmpty = s.rss()
	if err := r.measureServing(s, n, reps, walk); err != nil {
		return nil, err
	}

	// Restart from the file.
	if err := s.stop(); err != nil {
		return nil, err
	}
	s = nil
	if st, err := os.Stat(path); err == nil {
		r.fileBytes = st.Size()
	}
	began := time.Now()
	if s, err = start(bin, path, gogc); err != nil {
		return nil, err
	}
	r.restartMs = float64(time.Since(began)) / 1e6
	r.restartCPU = s.cpu()
	ctx := s.context()
	began = time.Now()
	if err := runKindQuery(ctx); err != nil {
		return nil, err
	}
	r.firstQueryMs = float64(time.Since(began)) / 1e6
	r.rssRestarted = s.rss()
	return r, nil
}

// measureRunning takes the figures of a server dsbench did not start,
// reset first; pid, if not 0, is its process, whose RSS it reads.
func measureRunning(addr string, pid, n, reps int, walk bool) (*result, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-api %q: %v", addr, err)
	}
	resp, err := http.Post("http://"+net.JoinHostPort(host, port)+"/reset", "text/plain", nil)
	if err != nil {
		return nil, fmt.Errorf("resetting %s: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("resetting %s: %s", addr, resp.Status)
	}
	s := &server{pid: pid, port: port}
	r := &result{n: n, rssEmpty: s.rss()}
	if err := r.measureServing(s, n, reps, walk); err != nil {
		return nil, err
	}
	return r, nil
}

// runKindQuery runs the kind query, limit 20, and checks it has 20 rows.
func runKindQuery(ctx context.Context) error {
	var rows []row
	if _, err := datastore.NewQuery("Row").Limit(20).GetAll(ctx, &rows); err != nil {
		return err
	}
	if len(rows) != 20 {
		return fmt.Errorf("the kind query got %d rows, want 20", len(rows))
	}
	return nil
}

// measureServing loads n rows into s, empty, and takes every figure but
// the file's and the restart's.
func (r *result) measureServing(s *server, n, reps int, walk bool) error {
	ctx := s.context()
	log.Printf("dsbench: n=%d: loading", n)
	cpu0 := s.cpu()
	began := time.Now()
	for lo := 0; lo < n; lo += 500 {
		hi := min(lo+500, n)
		keys := make([]*datastore.Key, 0, hi-lo)
		rows := make([]row, 0, hi-lo)
		for i := lo; i < hi; i++ {
			keys = append(keys, datastore.NewKey(ctx, "Row", "", int64(i+1), nil))
			rows = append(rows, newRow(i, n))
		}
		if _, err := datastore.PutMulti(ctx, keys, rows); err != nil {
			return err
		}
	}
	r.loadMs = float64(time.Since(began)) / 1e6
	r.loadCPU = s.cpu() - cpu0
	r.rssLoaded = s.rss()

	// The limit-20 queries; the cursor at N/2 in key order.
	it := datastore.NewQuery("Row").KeysOnly().Offset(n / 2).Limit(1).Run(ctx)
	if _, err := it.Next(nil); err != nil {
		return err
	}
	mid, err := it.Cursor()
	if err != nil {
		return err
	}
	queries := []struct {
		into *float64
		q    *datastore.Query
		want int
	}{
		{&r.kind, datastore.NewQuery("Row").Limit(20), 20},
		{&r.equality, datastore.NewQuery("Row").Filter("Group =", int64(7)).Limit(20), min(20, n/100)},
		{&r.order, datastore.NewQuery("Row").Order("-Created").Limit(20), 20},
		{&r.cursor, datastore.NewQuery("Row").Start(mid).Limit(20), 20},
	}
	runQuery := func(i int) error {
		var rows []row
		if _, err := queries[i].q.GetAll(ctx, &rows); err != nil {
			return err
		}
		if len(rows) != queries[i].want {
			return fmt.Errorf("query %d: got %d rows, want %d", i, len(rows), queries[i].want)
		}
		return nil
	}
	for i := range queries {
		if *queries[i].into, err = median(reps, func() error { return runQuery(i) }); err != nil {
			return err
		}
	}
	keys := make([]*datastore.Key, 100)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "Row", "", int64(1+(i*7919)%n), nil)
	}
	if r.get100, err = median(reps, func() error {
		return datastore.GetMulti(ctx, keys, make([]row, len(keys)))
	}); err != nil {
		return err
	}
	countQuery := func() error {
		got, err := datastore.NewQuery("Row").Count(ctx)
		if err == nil && got < n {
			err = fmt.Errorf("Count = %d, want at least %d", got, n)
		}
		return err
	}
	if r.count, err = median(max(reps/4, 1), countQuery); err != nil {
		return err
	}
	// Puts of new entities, alone and while another client queries.
	next := n
	put := func() error {
		next++
		_, err := datastore.Put(ctx, datastore.NewKey(ctx, "Row", "", int64(next), nil), &row{Name: "put", Group: -1, Created: time.Now()})
		return err
	}
	if r.put, err = median(reps, put); err != nil {
		return err
	}
	stop := make(chan struct{})
	qerr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				qerr <- nil
				return
			default:
			}
			var err error
			if i%5 == 4 {
				err = countQuery()
			} else {
				err = runQuery(i % 5)
			}
			if err != nil {
				qerr <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	r.putDuringQueries, err = median(reps, put)
	close(stop)
	if qe := <-qerr; err == nil {
		err = qe
	}
	if err != nil {
		return err
	}
	if walk {
		began := time.Now()
		var cur *datastore.Cursor
		seen := 0
		for {
			q := datastore.NewQuery("Row").Limit(1000)
			if cur != nil {
				q = q.Start(*cur)
			}
			it := q.Run(ctx)
			got := 0
			for {
				var x row
				_, err := it.Next(&x)
				if err == datastore.Done {
					break
				}
				if err != nil {
					return err
				}
				got++
			}
			seen += got
			if got < 1000 {
				break
			}
			c, err := it.Cursor()
			if err != nil {
				return err
			}
			cur = &c
		}
		if seen < n {
			return fmt.Errorf("the walk saw %d entities, want at least %d", seen, n)
		}
		r.walk = float64(time.Since(began)) / 1e6
	}
	r.rssQueried = s.rss()

	return nil
}

// printTable writes the results as a Markdown table, a column per size.
func printTable(w io.Writer, rs []*result) {
	head := "| kind size |"
	sep := "|---|"
	for _, r := range rs {
		head += fmt.Sprintf(" %d |", r.n)
		sep += "---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	line := func(name string, f func(*result) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", f(r))
		}
		fmt.Fprintln(w)
	}
	ms := func(x float64) string {
		switch {
		case x == 0:
			return ""
		case x < 10:
			return strconv.FormatFloat(x, 'f', 2, 64)
		case x < 100:
			return strconv.FormatFloat(x, 'f', 1, 64)
		}
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	perEntity := func(bytes int64, n int) string {
		if bytes <= 0 {
			return ""
		}
		return strconv.FormatFloat(float64(bytes)/float64(n)/1024, 'f', 2, 64) + " KB"
	}
	line("load, µs per entity (PutMulti of 500)", func(r *result) string { return ms(r.loadMs * 1000 / float64(r.n)) })
	line("server CPU during the load, µs per entity", func(r *result) string { return ms(float64(r.loadCPU.Microseconds()) / float64(r.n)) })
	line("datastore file, bytes per entity", func(r *result) string {
		if r.fileBytes == 0 {
			return ""
		}
		return strconv.FormatInt(r.fileBytes/int64(r.n), 10)
	})
	line("kind query, limit 20 (ms)", func(r *result) string { return ms(r.kind) })
	line("equality ~1%, limit 20", func(r *result) string { return ms(r.equality) })
	line("order by a time, limit 20", func(r *result) string { return ms(r.order) })
	line("page after a cursor at N/2", func(r *result) string { return ms(r.cursor) })
	line("Get of 100 keys", func(r *result) string { return ms(r.get100) })
	line("a Put alone", func(r *result) string { return ms(r.put) })
	line("a Put during queries", func(r *result) string { return ms(r.putDuringQueries) })
	line("Count", func(r *result) string { return ms(r.count) })
	line("walk by cursor, pages of 1,000", func(r *result) string { return ms(r.walk) })
	line("server RSS per entity, after the load", func(r *result) string { return perEntity(r.rssLoaded-r.rssEmpty, r.n) })
	line("server RSS per entity, after the queries", func(r *result) string { return perEntity(r.rssQueried-r.rssEmpty, r.n) })
	line("restart from the file (s)", func(r *result) string {
		if r.restartMs == 0 {
			return ""
		}
		return strconv.FormatFloat(r.restartMs/1000, 'f', 2, 64)
	})
	line("server CPU of the restart (s)", func(r *result) string {
		if r.restartMs == 0 {
			return ""
		}
		return strconv.FormatFloat(r.restartCPU.Seconds(), 'f', 2, 64)
	})
	line("first query after the restart", func(r *result) string { return ms(r.firstQueryMs) })
	line("server RSS per entity, after the restart", func(r *result) string { return perEntity(r.rssRestarted-r.rssEmpty, r.n) })
}
