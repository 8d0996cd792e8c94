package inprocess

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine"
	"google.golang.org/appengine/log"
)

// TestLogQuery runs an app as App Engine runs it (appengine.Main, with its
// log flushing) behind aelocal's front end, and reads the request logs,
// with the app's lines, through the v1 log client.
func TestLogQuery(t *testing.T) {
	// appengine.Main listens on PORT and never returns: it serves
	// http.DefaultServeMux for the rest of the test binary.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	http.HandleFunc("/logged", func(w http.ResponseWriter, r *http.Request) {
		ctx := appengine.NewContext(r)
		log.Infof(ctx, "handling %s", r.URL.Path)
		log.Errorf(ctx, "something failed")
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, appengine.RequestID(ctx))
	})
	srv, err := aelocal.NewServerOptions(&aelocal.Options{AppURL: "http://127.0.0.1:" + port, FrontAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	host, apiPort := srv.Addr()
	for k, v := range map[string]string{"PORT": port, "API_HOST": host, "API_PORT": apiPort, "RUN_WITH_DEVAPPSERVER": "1",
		// The version the app runs as, which production sets and
		// log.Query reads: aelocal's one version, 1.
		"GAE_VERSION": "1", "GAE_DEPLOYMENT_ID": "1"} {
		os.Setenv(k, v) // for appengine.Main, which reads them from now on
	}
	go appengine.Main()

	// Wait until the app listens.
	for attempt := 0; ; attempt++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if attempt == 3000 {
			t.Fatalf("the app never listened: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(srv.FrontURL() + "/logged?x=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := string(b)
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("the app answered %d %s", resp.StatusCode, b)
	}

	ctx := appengine.WithAPICallFunc(context.Background(), srv.Call)
	q := &log.Query{AppLogs: true} // the app's own version
	var got *log.Record
	for res := q.Run(ctx); ; {
		rec, err := res.Next()
		if err == log.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Resource == "/logged?x=1" && rec.Status == http.StatusTeapot {
			got = rec
			break
		}
	}
	if got == nil {
		t.Fatal("no record of the request")
	}
	if string(got.RequestID) != id || got.Method != "GET" || !got.Finished || got.VersionID != "1" || got.ModuleID != "default" {
		t.Errorf("record: %+v (the app saw request ID %q)", got, id)
	}
	if len(got.AppLogs) != 2 || got.AppLogs[0].Message != "handling /logged" || got.AppLogs[0].Level != 1 || got.AppLogs[1].Level != 3 {
		t.Errorf("app lines: %+v", got.AppLogs)
	}
	// Only requests with an ERROR line or worse.
	q = &log.Query{ApplyMinLevel: true, MinLevel: 4, Versions: []string{"1"}}
	if rec, err := q.Run(ctx).Next(); err != log.Done {
		t.Errorf("MinLevel CRITICAL: %+v, %v", rec, err)
	}
}
