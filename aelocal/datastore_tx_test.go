package aelocal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/protobuf/proto"
)

type counter struct{ N int }

// txCase is one transaction behaviour, checked under Middleware and over
// the bridge alike.
type txCase struct {
	name string
	run  func(t *testing.T, s *Server, ctx context.Context)
}

func TestDatastoreTransactions(t *testing.T) { runTxCases(t, txCases) }

// runTxCases runs each case on both paths and checks that it left no
// transaction state behind.
func runTxCases(t *testing.T, cases []txCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
				c.run(t, s, ctx)
				s.datastore.mu.Lock()
				open, vers, hist := len(s.datastore.txs), len(s.datastore.groupVer), len(s.datastore.history)
				s.datastore.mu.Unlock()
				if open != 0 || vers != 0 || hist != 0 {
					t.Fatalf("left behind: %d open transactions, %d group versions, %d histories", open, vers, hist)
				}
			})
		})
	}
}

func getN(t *testing.T, ctx context.Context, k *datastore.Key) int {
	t.Helper()
	var c counter
	if err := datastore.Get(ctx, k, &c); err != nil && err != datastore.ErrNoSuchEntity {
		t.Fatal(err)
	}
	return c.N
}

func putN(t *testing.T, ctx context.Context, k *datastore.Key, n int) {
	t.Helper()
	if _, err := datastore.Put(ctx, k, &counter{N: n}); err != nil {
		t.Fatal(err)
	}
}

// transfer moves n from a to b in a transaction of its own.
func transfer(ctx context.Context, a, b *datastore.Key, n int) error {
	return datastore.RunInTransaction(ctx, func(tc context.Context) error {
		var x, y counter
		if err := datastore.GetMulti(tc, []*datastore.Key{a, b}, []*counter{&x, &y}); err != nil {
			return err
		}
		x.N -= n
		y.N += n
		_, err := datastore.PutMulti(tc, []*datastore.Key{a, b}, []*counter{&x, &y})
		return err
	}, &datastore.TransactionOptions{XG: true})
}

var txCases = []txCase{
	{"commit applies, buffered writes invisible until then", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		child := datastore.NewKey(ctx, "Counter", "d", 0, k)
		putN(t, ctx, k, 1)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			var c counter
			if err := datastore.Get(tc, k, &c); err != nil {
				return err
			}
			c.N++
			if _, err := datastore.Put(tc, k, &c); err != nil {
				return err
			}
			if _, err := datastore.Put(tc, child, &counter{N: 100}); err != nil {
				return err
			}
			// Production: a transaction does not read its own writes.
			if err := datastore.Get(tc, k, &c); err != nil || c.N != 1 {
				return fmt.Errorf("read in transaction: %+v, %v", c, err)
			}
			if getN(t, ctx, k) != 1 {
				return errors.New("buffered write visible outside the transaction")
			}
			n, err := datastore.NewQuery("Counter").Ancestor(k).Count(tc)
			if err != nil || n != 1 {
				return fmt.Errorf("ancestor query in transaction: %d, %v", n, err)
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if getN(t, ctx, k) != 2 || getN(t, ctx, child) != 100 {
			t.Fatalf("after commit: %d %d", getN(t, ctx, k), getN(t, ctx, child))
		}
	}},
	{"error rolls back", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		child := datastore.NewKey(ctx, "Counter", "d", 0, k)
		putN(t, ctx, k, 2)
		putN(t, ctx, child, 100)
		boom := errors.New("boom")
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if _, err := datastore.Put(tc, k, &counter{N: 50}); err != nil {
				return err
			}
			if err := datastore.Delete(tc, child); err != nil {
				return err
			}
			return boom
		}, nil)
		if err != boom {
			t.Fatalf("got %v, want boom", err)
		}
		if getN(t, ctx, k) != 2 || getN(t, ctx, child) != 100 {
			t.Fatalf("after rollback: %d %d", getN(t, ctx, k), getN(t, ctx, child))
		}
	}},
	{"panic rolls back", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 2)
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Fatalf("recovered %v", r)
				}
			}()
			datastore.RunInTransaction(ctx, func(tc context.Context) error {
				datastore.Put(tc, k, &counter{N: 50})
				panic("boom")
			}, nil)
		}()
		if getN(t, ctx, k) != 2 {
			t.Fatalf("after panic: %d", getN(t, ctx, k))
		}
		if n := s.Stats()["datastore_v3.Rollback"]; n != 1 {
			t.Fatalf("%d rollbacks", n)
		}
	}},
	{"conflict retries, then ErrConcurrentTransaction", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 2)
		attempts := 0
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			attempts++
			var c counter
			if err := datastore.Get(tc, k, &c); err != nil {
				return err
			}
			if attempts == 1 {
				putN(t, ctx, k, 10)
			}
			c.N++
			_, err := datastore.Put(tc, k, &c)
			return err
		}, nil)
		if err != nil || attempts != 2 || getN(t, ctx, k) != 11 {
			t.Fatalf("retry: err %v, attempts %d, N %d", err, attempts, getN(t, ctx, k))
		}
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			datastore.Get(tc, k, &counter{})
			putN(t, ctx, k, 20)
			_, err := datastore.Put(tc, k, &counter{N: 21})
			return err
		}, &datastore.TransactionOptions{Attempts: 2})
		if err != datastore.ErrConcurrentTransaction {
			t.Fatalf("got %v, want ErrConcurrentTransaction", err)
		}
		if getN(t, ctx, k) != 20 {
			t.Fatalf("N = %d, want 20", getN(t, ctx, k))
		}
	}},
	{"concurrent increments lose nothing", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 20)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = datastore.RunInTransaction(ctx, func(tc context.Context) error {
					var c counter
					if err := datastore.Get(tc, k, &c); err != nil {
						return err
					}
					c.N++
					_, err := datastore.Put(tc, k, &c)
					return err
				}, &datastore.TransactionOptions{Attempts: 100})
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if getN(t, ctx, k) != 28 {
			t.Fatalf("N = %d after 8 concurrent increments of 20", getN(t, ctx, k))
		}
	}},
	{"entity groups: XG, with no limit on their number", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		k2 := datastore.NewKey(ctx, "Counter", "other-root", 0, nil)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			datastore.Get(tc, k, &counter{})
			return datastore.Get(tc, k2, &counter{})
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", "cross-group")
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if _, err := datastore.Put(tc, k, &counter{N: 1}); err != nil {
				return err
			}
			_, err := datastore.Put(tc, k2, &counter{N: 2})
			return err
		}, &datastore.TransactionOptions{XG: true})
		if err != nil || getN(t, ctx, k) != 1 || getN(t, ctx, k2) != 2 {
			t.Fatalf("XG: %v, %d, %d", err, getN(t, ctx, k), getN(t, ctx, k2))
		}
		// Firestore in Datastore mode dropped the old limit of 25 entity
		// groups in an XG transaction.
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			for i := 0; i < 30; i++ {
				k := datastore.NewKey(ctx, "Counter", "", int64(i+1), nil)
				if err := datastore.Get(tc, k, &counter{}); err != nil && err != datastore.ErrNoSuchEntity {
					return err
				}
				if _, err := datastore.Put(tc, k, &counter{N: i}); err != nil {
					return err
				}
			}
			return nil
		}, &datastore.TransactionOptions{XG: true})
		if err != nil || getN(t, ctx, datastore.NewKey(ctx, "Counter", "", 30, nil)) != 29 {
			t.Fatalf("XG transaction on 30 groups: %v", err)
		}
	}},
	{"one app per transaction", func(t *testing.T, s *Server, ctx context.Context) {
		// A key of another app, as DecodeKey gives it.
		ref, _ := newMsg("appengine.v2.Reference")
		writeRef(ref, "s~other-app", "", dsPath{{kind: "Counter", name: "c"}})
		b, err := proto.Marshal(ref.m.Interface())
		if err != nil {
			t.Fatal(err)
		}
		other, err := datastore.DecodeKey(strings.TrimRight(base64.URLEncoding.EncodeToString(b), "="))
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range []func(tc context.Context) error{
			func(tc context.Context) error { return datastore.Get(tc, other, &counter{}) },
			func(tc context.Context) error { _, err := datastore.Put(tc, other, &counter{N: 1}); return err },
			func(tc context.Context) error { return datastore.Delete(tc, other) },
		} {
			err := datastore.RunInTransaction(ctx, op, &datastore.TransactionOptions{XG: true})
			wantAPIError(t, err, "BAD_REQUEST", "cannot span applications")
		}
		if n, _ := s.Entities("", "Counter"); len(n) != 0 {
			t.Fatalf("stored %v", n)
		}
	}},
	// Non-ancestor queries in transactions: datastore_txquery_test.go.
	{"read-only cannot write; incomplete keys", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			_, err := datastore.Put(tc, k, &counter{})
			return err
		}, &datastore.TransactionOptions{ReadOnly: true})
		wantAPIError(t, err, "BAD_REQUEST", "read-only")
		var ik *datastore.Key
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			var err error
			ik, err = datastore.Put(tc, datastore.NewIncompleteKey(tc, "Counter", k), &counter{N: 5})
			return err
		}, nil)
		if err != nil || ik.Incomplete() || getN(t, ctx, ik) != 5 {
			t.Fatalf("incomplete key in transaction: %v %v", ik, err)
		}
	}},
	{"Get reads one snapshot across groups", func(t *testing.T, s *Server, ctx context.Context) {
		a := datastore.NewKey(ctx, "Account", "a", 0, nil)
		b := datastore.NewKey(ctx, "Account", "b", 0, nil)
		putN(t, ctx, a, 100)
		putN(t, ctx, b, 0)
		for _, readOnly := range []bool{true, false} {
			attempts := 0
			var sums []int
			err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
				attempts++
				var x, y counter
				if err := datastore.Get(tc, a, &x); err != nil {
					return err
				}
				if attempts == 1 {
					if err := transfer(ctx, a, b, 30); err != nil {
						return err
					}
				}
				if err := datastore.Get(tc, b, &y); err != nil {
					return err
				}
				sums = append(sums, x.N+y.N)
				return nil
			}, &datastore.TransactionOptions{XG: true, ReadOnly: readOnly})
			if err != nil {
				t.Fatalf("read-only %v: %v", readOnly, err)
			}
			for _, sum := range sums {
				if sum != 100 {
					t.Fatalf("read-only %v: a+b read as %d, want 100 (sums %v)", readOnly, sum, sums)
				}
			}
			// A read-only transaction never conflicts; a read-write one
			// that read stale data does, and its retry reads the new state.
			if want := map[bool]int{true: 1, false: 2}[readOnly]; attempts != want {
				t.Fatalf("read-only %v: %d attempts, want %d", readOnly, attempts, want)
			}
		}
	}},
	{"ancestor query reads one snapshot across batches", func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "Ledger", "l", 0, nil)
		var keys []*datastore.Key
		var vals []*counter
		for i := 0; i < 25; i++ {
			keys = append(keys, datastore.NewKey(ctx, "Entry", "", int64(i+1), parent))
			vals = append(vals, &counter{N: 4})
		}
		if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
			t.Fatal(err)
		}
		var sum, n int
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			sum, n = 0, 0
			it := datastore.NewQuery("Entry").Ancestor(parent).BatchSize(10).Run(tc)
			for {
				var c counter
				_, err := it.Next(&c)
				if err == datastore.Done {
					return nil
				}
				if err != nil {
					return err
				}
				if n == 0 {
					// Move 25 from the first entry to the last, as another
					// client, while the query is between batches.
					if err := transfer(ctx, keys[0], keys[24], 25); err != nil {
						return err
					}
				}
				sum += c.N
				n++
			}
		}, &datastore.TransactionOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if n != 25 || sum != 100 {
			t.Fatalf("read %d entries summing to %d, want 25 summing to 100", n, sum)
		}
	}},
	{"snapshot hides entities deleted and created since", func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "Ledger", "l", 0, nil)
		old := datastore.NewKey(ctx, "Entry", "old", 0, parent)
		putN(t, ctx, old, 1)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if err := datastore.Delete(ctx, old); err != nil {
				return err
			}
			putN(t, ctx, datastore.NewKey(ctx, "Entry", "new", 0, parent), 2)
			var got []counter
			keys, err := datastore.NewQuery("Entry").Ancestor(parent).GetAll(tc, &got)
			if err != nil {
				return err
			}
			if len(keys) != 1 || keys[0].StringID() != "old" || got[0].N != 1 {
				return fmt.Errorf("snapshot query got %v %v", keys, got)
			}
			var c counter
			if err := datastore.Get(tc, old, &c); err != nil || c.N != 1 {
				return fmt.Errorf("snapshot get: %v %v", c, err)
			}
			return nil
		}, &datastore.TransactionOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"idle transaction expires after 60 s of the server clock", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 1)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if _, err := datastore.Put(tc, k, &counter{N: 2}); err != nil {
				return err
			}
			s.FastForward(time.Hour) // nothing else runs meanwhile
			return nil
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", "idle for 1h0m0s")
		if getN(t, ctx, k) != 1 {
			t.Fatal("an expired transaction committed")
		}
		// 59 s idle is fine.
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			s.FastForward(59 * time.Second)
			_, err := datastore.Put(tc, k, &counter{N: 3})
			return err
		}, nil)
		if err != nil || getN(t, ctx, k) != 3 {
			t.Fatalf("59 s idle: %v, %d", err, getN(t, ctx, k))
		}
	}},
	{"continuing a query uses the transaction", func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "Ledger", "l", 0, nil)
		for i := 1; i <= 3; i++ {
			putN(t, ctx, datastore.NewKey(ctx, "Entry", "", int64(i), parent), i)
		}
		// A query read in batches is the transaction in use: with each
		// step under the idle limit (the client fetches a batch every
		// other step at most), it neither expires nor lets the commit
		// find it idle; a fetch after the idle limit fails.
		iterate := func(step time.Duration) (nextErr, err error) {
			err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
				it := datastore.NewQuery("Entry").Ancestor(parent).BatchSize(1).Run(tc)
				for {
					s.FastForward(step)
					if _, err := it.Next(&counter{}); err == datastore.Done {
						break
					} else if err != nil {
						nextErr = err
						return err
					}
				}
				s.FastForward(step)
				_, err := datastore.Put(tc, parent, &counter{N: 6})
				return err
			}, nil)
			return nextErr, err
		}
		if _, err := iterate(25 * time.Second); err != nil || getN(t, ctx, parent) != 6 {
			t.Fatalf("commit after a query read in batches over 150 s: %v", err)
		}
		nextErr, _ := iterate(61 * time.Second)
		wantAPIError(t, nextErr, "BAD_REQUEST", "has expired")
	}},
	{"busy transaction expires after 270 s", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 1)
		uses := 0
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			for {
				s.FastForward(50 * time.Second)
				if err := datastore.Get(tc, k, &counter{}); err != nil {
					return err
				}
				uses++
			}
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", "more than 4m30s")
		if uses != 5 {
			t.Fatalf("%d uses before expiry, want 5 (250 s)", uses)
		}
	}},
}

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestRoutingCanary fails if appengine/v2 stops routing a request's calls
// by its context (see routing.go): transactions under Middleware depend on
// it.
func TestRoutingCanary(t *testing.T) {
	if _, err := keysFor(appengine.APICall); err != nil {
		t.Fatalf("appengine/v2 can no longer be routed by context, so Middleware cannot serve transactions: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	s, err := Serve(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := middlewareContext(t, s)
	if err := memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if cl.n.Load() == 0 {
		t.Fatal("a Middleware call did not reach the server over its bridge")
	}
	k := datastore.NewKey(ctx, "Canary", "k", 0, nil)
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		if _, err := datastore.Put(tc, k, &counter{N: 1}); err != nil {
			return err
		}
		if err := datastore.Get(ctx, k, &counter{}); err != datastore.ErrNoSuchEntity {
			return fmt.Errorf("a write inside a transaction is visible before commit (Get: %v)", err)
		}
		return errors.New("roll back")
	}, nil)
	if err == nil || err.Error() != "roll back" {
		t.Fatal(err)
	}
	if err := datastore.Get(ctx, k, &counter{}); err != datastore.ErrNoSuchEntity {
		t.Fatalf("a rolled back write is there (Get: %v)", err)
	}
}

// Calls handed over with WithAPICallFunc lose their transaction in the
// client, so Call refuses to begin one.
func TestCallRefusesTransactions(t *testing.T) {
	s := newTestServer(t)
	ctx := appengine.WithAPICallFunc(middlewareContext(t, s), s.Call)
	k := datastore.NewKey(ctx, "K", "k", 0, nil)
	putN(t, ctx, k, 1)
	if getN(t, ctx, k) != 1 {
		t.Fatal("Call does not serve the datastore")
	}
	err := datastore.RunInTransaction(ctx, func(tc context.Context) error { return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), "transactions cannot be served in-process") {
		t.Fatalf("got %v", err)
	}
	// The same refusal protects Middleware should routing ever break.
	err = datastore.RunInTransaction(appengine.WithAPICallFunc(ctx, s.inProcess(errors.New("probe failed"))), func(tc context.Context) error { return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), "probe failed") {
		t.Fatalf("got %v", err)
	}
}

// Production and the Python SDK's stub accept negative IDs; apps use them.
func TestDatastoreNegativeIDs(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "Bug", "", -7, nil)
		k := datastore.NewKey(ctx, "Crash", "", -1<<62, parent)
		putN(t, ctx, parent, 1)
		putN(t, ctx, k, 2)
		putN(t, ctx, datastore.NewKey(ctx, "Crash", "", 3, parent), 3)
		if getN(t, ctx, k) != 2 || getN(t, ctx, parent) != 1 {
			t.Fatal("negative IDs do not round-trip")
		}
		keys, err := datastore.NewQuery("Crash").Ancestor(parent).KeysOnly().GetAll(ctx, nil)
		if err != nil || len(keys) != 2 || keys[0].IntID() != -1<<62 || keys[1].IntID() != 3 {
			t.Fatalf("keys %v, %v", keys, err)
		}
		// An automatic ID stays positive.
		ik, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Crash", parent), &counter{})
		if err != nil || ik.IntID() <= 0 {
			t.Fatalf("%v %v", ik, err)
		}
	})
}

// Automatic IDs are those of production's scattered policy, the values
// dev_appserver gives too; AllocateIDs stays sequential, and explicit IDs
// in either range push their counter past them.
func TestDatastoreScatteredIDs(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		var got []int64
		for i := 0; i < 4; i++ {
			k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &counter{})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, k.IntID())
		}
		want := []int64{0x14000000000000, 0x12000000000000, 0x16000000000000, 0x11000000000000}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("automatic IDs %x, want %x", got, want)
		}
		if lo, hi, err := datastore.AllocateIDs(ctx, "S", nil, 3); err != nil || lo != 1 || hi != 4 {
			t.Fatalf("AllocateIDs: [%d, %d) %v", lo, hi, err)
		}
		// An explicit ID that is counter 5's takes it: the next is 6's.
		putN(t, ctx, datastore.NewKey(ctx, "S", "", scatteredID(5), nil), 1)
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &counter{})
		if err != nil || k.IntID() != scatteredID(6) {
			t.Fatalf("after an explicit scattered ID: %v %v", k, err)
		}
	})
}
