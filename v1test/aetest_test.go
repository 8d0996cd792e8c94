package v1test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/appengine"
	"google.golang.org/appengine/aetest"
	"google.golang.org/appengine/datastore"
	"google.golang.org/appengine/memcache"
	"google.golang.org/appengine/user"
)

// TestMain points aetest at cmd/aelocal: the binary in AELOCAL_BIN, or one
// built here. v1.6.7 reads APPENGINE_DEV_APPSERVER_BINARY, v1.6.8
// APPENGINE_DEV_APPSERVER; both are set.
func TestMain(m *testing.M) {
	bin := os.Getenv("AELOCAL_BIN")
	var dir string
	if bin == "" {
		var err error
		dir, err = os.MkdirTemp("", "aelocal-v1test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bin = filepath.Join(dir, "aelocal")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/icza/gaesession/v2/cmd/aelocal").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building aelocal: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	os.Setenv("APPENGINE_DEV_APPSERVER_BINARY", bin)
	os.Setenv("APPENGINE_DEV_APPSERVER", bin)
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

type entry struct {
	Owner string
	N     int
}

func TestNewContext(t *testing.T) {
	ctx, done, err := aetest.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	it, err := memcache.Get(ctx, "k")
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("memcache: %v %v", it, err)
	}
	k := datastore.NewKey(ctx, "Entry", "e", 0, nil)
	if _, err := datastore.Put(ctx, k, &entry{"ann", 1}); err != nil {
		t.Fatal(err)
	}
	var got entry
	if err := datastore.Get(ctx, k, &got); err != nil || got.N != 1 {
		t.Fatalf("datastore: %+v %v", got, err)
	}
}

func TestInstance(t *testing.T) {
	inst, err := aetest.NewInstance(&aetest.Options{StronglyConsistentDatastore: true, SuppressDevAppServerLog: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			inst.Close()
		}
	}()
	newCtx := func(u *user.User) context.Context {
		t.Helper()
		req, err := inst.NewRequest("GET", "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if u != nil {
			aetest.Login(u, req)
		}
		return appengine.NewContext(req)
	}

	for i, name := range []string{"ann@example.com", "bob@example.com", "cy@example.com"} {
		ctx := newCtx(&user.User{Email: name, Admin: i == 0})
		u := user.Current(ctx)
		if u == nil || u.Email != name || user.IsAdmin(ctx) != (i == 0) {
			t.Fatalf("request %d: user %+v", i, u)
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Entry", "", int64(i+1), nil), &entry{u.Email, i}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := newCtx(nil)
	var all []entry
	if _, err := datastore.NewQuery("Entry").Filter("N >=", 1).Order("-N").GetAll(ctx, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Owner != "cy@example.com" {
		t.Fatalf("query: %+v", all)
	}
	if n, err := memcache.Increment(ctx, "hits", 2, 40); err != nil || n != 42 {
		t.Fatalf("memcache: %d %v", n, err)
	}

	k := datastore.NewKey(ctx, "Entry", "", 1, nil)
	attempts := 0
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		attempts++
		var e entry
		if err := datastore.Get(tc, k, &e); err != nil {
			return err
		}
		if attempts == 1 {
			if _, err := datastore.Put(newCtx(nil), k, &entry{"other", 100}); err != nil {
				return err
			}
		}
		e.N++
		_, err := datastore.Put(tc, k, &e)
		return err
	}, nil)
	var e entry
	if err != nil || attempts != 2 || datastore.Get(ctx, k, &e) != nil || e.N != 101 {
		t.Fatalf("transaction: %v after %d attempts, %+v", err, attempts, e)
	}
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		datastore.Put(tc, k, &entry{"gone", -1})
		return errors.New("roll back")
	}, nil)
	if err == nil || datastore.Get(ctx, k, &e) != nil || e.N != 101 {
		t.Fatalf("rollback: %v, %+v", err, e)
	}

	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := datastore.Get(ctx, k, &e); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("after Close: %v", err)
	}
}
