package aelocaltest

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
)

// target is an aelocal serving both APIs, with a client of each on it:
// Cloud is the unchanged Cloud client, configured by DATASTORE_EMULATOR_HOST
// and DATASTORE_PROJECT_ID only; AE is an appengine/v2 context.
type target struct {
	Cloud *datastore.Client
	AE    context.Context
	Srv   *aelocal.Server // nil for the aelocal command
}

// eachTarget runs f against an in-process server (aelocal.RunTOptions) and,
// if AELOCAL_BIN names a built cmd/aelocal, against that command. The
// tests set environment variables, so none is parallel.
func eachTarget(t *testing.T, f func(t *testing.T, tg *target)) {
	t.Run("inprocess", func(t *testing.T) { f(t, inProcess(t)) })
	t.Run("command", func(t *testing.T) {
		bin := os.Getenv("AELOCAL_BIN")
		if bin == "" {
			t.Skip("AELOCAL_BIN is not set (TestCloudModule of internal/cloudmodule sets it)")
		}
		f(t, command(t, bin))
	})
}

// inProcess starts a server with the Cloud Datastore API on a free port.
func inProcess(t *testing.T) *target {
	t.Helper()
	srv := aelocal.RunTOptions(t, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	t.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
	t.Setenv("DATASTORE_PROJECT_ID", srv.CloudProjectID())
	return &target{Cloud: newCloudClient(t), AE: appengine.NewContext(srv.NewRequest("GET", "/", nil)), Srv: srv}
}

// command starts the aelocal command on free ports and takes the
// environment from the export lines it prints, as a user would.
func command(t *testing.T, bin string) *target {
	t.Helper()
	t.Setenv("GAE_APPLICATION", "dev~aelocal")
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "GAE_APPLICATION=dev~aelocal")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	exports := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				exports[k] = v
			}
		}
		if strings.HasPrefix(line, "aelocal: console at") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	for _, k := range []string{"API_HOST", "API_PORT", "DATASTORE_EMULATOR_HOST", "DATASTORE_PROJECT_ID"} {
		if exports[k] == "" {
			t.Fatalf("aelocal printed no %s (exports %v)", k, exports)
		}
		t.Setenv(k, exports[k])
	}
	var ae context.Context
	appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae = appengine.NewContext(r)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	return &target{Cloud: newCloudClient(t), AE: ae}
}

// newCloudClient makes a Cloud client as an unchanged program does: from
// the environment alone.
func newCloudClient(t *testing.T) *datastore.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := datastore.NewClient(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
