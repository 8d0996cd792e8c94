// Package inprocess tests aelocal's in-process routing with the appengine
// v1 client. A binary that links both appengine v1 and v2 (which aelocal
// uses) registers two protobuf files of the same name, which the protobuf
// runtime refuses at start unless told otherwise, so run these tests with
//
//	GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn go test ./...
//
// as the repository's own test run does. aetest suites need nothing of the
// kind: they talk to cmd/aelocal in a process of its own.
package inprocess

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine"
	"google.golang.org/appengine/datastore"
	"google.golang.org/appengine/memcache"
)

type entry struct {
	Owner string
	N     int
}

// In-process: Server.Call is an appengine.APICallFunc of v1 too.
func TestCallInProcess(t *testing.T) {
	srv := aelocal.RunT(t)
	ctx := appengine.WithAPICallFunc(context.Background(), srv.Call)
	k := datastore.NewKey(ctx, "Entry", "e", 0, nil)
	if _, err := datastore.Put(ctx, k, &entry{"ann", 7}); err != nil {
		t.Fatal(err)
	}
	var e entry
	if err := datastore.Get(ctx, k, &e); err != nil || e.N != 7 {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := memcache.Get(ctx, "nothing"); err != memcache.ErrCacheMiss {
		t.Fatalf("memcache: %v", err)
	}
	if srv.Stats()["datastore_v3.Put"] != 1 {
		t.Fatalf("stats %v", srv.Stats())
	}
	err := datastore.RunInTransaction(ctx, func(tc context.Context) error { return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), "transactions cannot be served in-process") {
		t.Fatalf("transaction: %v", err)
	}
}

// Server.Route routes v1's calls by context from 1.6.8 on, transactions
// included; before, it says it cannot.
func TestRoute(t *testing.T) {
	srv := aelocal.RunT(t)
	ctx, err := srv.Route(context.Background(), appengine.APICall)
	if err != nil {
		// v1 before 1.6.8 keeps the API URL in its request state, not in
		// the context, and refuses calls without a request.
		if !strings.Contains(err.Error(), "not an App Engine context") {
			t.Fatal(err)
		}
		t.Logf("this client cannot be routed by context: %v", err)
		return
	}
	k := datastore.NewKey(ctx, "Entry", "e", 0, nil)
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		if _, err := datastore.Put(tc, k, &entry{"ann", 1}); err != nil {
			return err
		}
		if err := datastore.Get(ctx, k, &entry{}); err != datastore.ErrNoSuchEntity {
			return fmt.Errorf("visible before commit: %v", err)
		}
		return errors.New("roll back")
	}, nil)
	if err == nil || err.Error() != "roll back" {
		t.Fatal(err)
	}
	if err := datastore.Get(ctx, k, &entry{}); err != datastore.ErrNoSuchEntity {
		t.Fatalf("after rollback: %v", err)
	}
	attempts := 0
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		attempts++
		datastore.Get(tc, k, &entry{})
		if attempts == 1 {
			datastore.Put(ctx, k, &entry{"other", 1})
		}
		_, err := datastore.Put(tc, k, &entry{"ann", 2})
		return err
	}, nil)
	var e entry
	if err != nil || attempts != 2 || datastore.Get(ctx, k, &e) != nil || e.N != 2 {
		t.Fatalf("conflict: %v after %d attempts, %+v", err, attempts, e)
	}
}
