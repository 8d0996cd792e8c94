package aelocal

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestDatastoreTxConflicts: a transaction conflicts with what it read, not
// with what it only wrote, as in Firestore in Datastore mode and the SDK's
// stub.
func TestDatastoreTxConflicts(t *testing.T) { runTxCases(t, txConflictCases) }

var txConflictCases = []txCase{
	{"a blind write does not conflict: the transaction's value wins", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "c", 0, nil)
		putN(t, ctx, k, 1)
		attempts := 0
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			attempts++
			if _, err := datastore.Put(tc, k, &counter{N: 21}); err != nil {
				return err
			}
			putN(t, ctx, k, 20) // lands before the commit
			return nil
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != nil || attempts != 1 || getN(t, ctx, k) != 21 {
			t.Fatalf("blind Put: err %v, attempts %d, N %d; want nil, 1, 21", err, attempts, getN(t, ctx, k))
		}
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if err := datastore.Delete(tc, k); err != nil {
				return err
			}
			putN(t, ctx, k, 30)
			return nil
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != nil || getN(t, ctx, k) != 0 {
			t.Fatalf("blind Delete: err %v, N %d; want nil, deleted", err, getN(t, ctx, k))
		}
	}},
	{"a write of another entity of the group read does not conflict", func(t *testing.T, s *Server, ctx context.Context) {
		root := datastore.NewKey(ctx, "Counter", "root", 0, nil)
		child := datastore.NewKey(ctx, "Counter", "child", 0, root)
		putN(t, ctx, root, 1)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			var c counter
			if err := datastore.Get(tc, root, &c); err != nil {
				return err
			}
			putN(t, ctx, child, 5)
			c.N++
			_, err := datastore.Put(tc, root, &c)
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != nil || getN(t, ctx, root) != 2 || getN(t, ctx, child) != 5 {
			t.Fatalf("err %v, root %d, child %d", err, getN(t, ctx, root), getN(t, ctx, child))
		}
	}},
	{"a key read missing conflicts with its insertion", func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Counter", "new", 0, nil)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			if err := datastore.Get(tc, k, &counter{}); err != datastore.ErrNoSuchEntity {
				t.Fatalf("Get: %v", err)
			}
			putN(t, ctx, k, 7)
			_, err := datastore.Put(tc, k, &counter{N: 1})
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != datastore.ErrConcurrentTransaction || getN(t, ctx, k) != 7 {
			t.Fatalf("err %v, N %d; want ErrConcurrentTransaction, 7", err, getN(t, ctx, k))
		}
	}},
	{"an ancestor query conflicts with a new entity in its group", func(t *testing.T, s *Server, ctx context.Context) {
		root := datastore.NewKey(ctx, "Counter", "root", 0, nil)
		putN(t, ctx, root, 1)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			n, err := datastore.NewQuery("Counter").Ancestor(root).Count(tc)
			if err != nil {
				return err
			}
			putN(t, ctx, datastore.NewKey(ctx, "Counter", "child", 0, root), 5)
			_, err = datastore.Put(tc, root, &counter{N: n})
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != datastore.ErrConcurrentTransaction || getN(t, ctx, root) != 1 {
			t.Fatalf("err %v, N %d; want ErrConcurrentTransaction, 1", err, getN(t, ctx, root))
		}
	}},
	{"a read set past its bound conflicts with any write", func(t *testing.T, s *Server, ctx context.Context) {
		other := datastore.NewKey(ctx, "Other", "o", 0, nil)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			keys := make([]*datastore.Key, maxGetKeys)
			for n := 0; n <= maxTxReads; n += len(keys) {
				for i := range keys {
					keys[i] = datastore.NewKey(ctx, "Counter", "", int64(n+i+1), nil)
				}
				datastore.GetMulti(tc, keys, make([]counter, len(keys)))
			}
			putN(t, ctx, other, 1)
			_, err := datastore.Put(tc, datastore.NewKey(ctx, "Counter", "", 1, nil), &counter{N: 1})
			return err
		}, &datastore.TransactionOptions{XG: true, Attempts: 1})
		if err != datastore.ErrConcurrentTransaction {
			t.Fatalf("err %v, want ErrConcurrentTransaction", err)
		}
	}},
	{"a transaction holds at most 10 MiB of writes", func(t *testing.T, s *Server, ctx context.Context) {
		big := &txBlob{B: []byte(strings.Repeat("x", 1000000))}
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			for i := 0; i < 11; i++ {
				if _, err := datastore.Put(tc, datastore.NewKey(ctx, "Blob", "", int64(i+1), nil), big); err != nil {
					return err
				}
			}
			return nil
		}, &datastore.TransactionOptions{XG: true})
		wantAPIError(t, err, "BAD_REQUEST", "transaction too big")
		if n, _ := s.Entities("", "Blob"); len(n) != 0 {
			t.Fatalf("%d entities stored", len(n))
		}
	}},
}

// txBlob is an entity of about the size of its unindexed bytes.
type txBlob struct {
	B []byte `datastore:",noindex"`
}

// TestTxHistoryBound: an open transaction whose snapshot would need more
// than Options.TxHistoryLimit of replaced versions ends as expired, with a
// message that says why, and the history it pinned is released.
func TestTxHistoryBound(t *testing.T) {
	const limit = 3 << 20
	opts := func(t *testing.T) *Options { return &Options{TxHistoryLimit: limit} }
	bothPathsWith(t, opts, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "Blob", "b", 0, nil)
		big := func(i int) *txBlob {
			return &txBlob{B: []byte(strings.Repeat(string(rune('a'+i%26)), 1000000))}
		}
		if _, err := datastore.Put(ctx, k, big(0)); err != nil {
			t.Fatal(err)
		}
		attempts := 0
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			attempts++
			var b txBlob
			if err := datastore.Get(tc, k, &b); err != nil {
				return err
			}
			for i := 1; i <= 10; i++ {
				if _, err := datastore.Put(ctx, k, big(i)); err != nil {
					t.Fatal(err)
				}
			}
			s.datastore.mu.Lock()
			held := s.datastore.historyBytes
			s.datastore.mu.Unlock()
			if held > limit {
				t.Errorf("history holds %d bytes, more than the limit %d", held, limit)
			}
			return datastore.Get(tc, k, &b)
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", "expired")
		if !strings.Contains(err.Error(), "TxHistoryLimit") || attempts != 1 {
			t.Fatalf("err %v after %d attempts; want the reason, naming TxHistoryLimit, at once", err, attempts)
		}
		// Within the limit, a transaction keeps its snapshot.
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			var b txBlob
			if err := datastore.Get(tc, k, &b); err != nil {
				return err
			}
			datastore.Put(ctx, k, big(20))
			datastore.Put(ctx, k, big(21))
			if err := datastore.Get(tc, k, &b); err != nil || b.B[0] != 'k' {
				t.Fatalf("snapshot read: %v, %q", err, b.B[:1])
			}
			return nil
		}, &datastore.TransactionOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
	})
}
