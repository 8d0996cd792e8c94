package aelocaltest

import (
	"context"
	"errors"
	"testing"

	"cloud.google.com/go/datastore"
	aeds "google.golang.org/appengine/v2/datastore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type counter struct{ N int64 }

// TestTransactionRetries: a transaction whose read is overwritten before
// it commits fails with ABORTED, and RunInTransaction runs it again, as
// against production; the write of each side survives.
func TestTransactionRetries(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c := context.Background(), tg.Cloud
		k := datastore.NameKey("Counter", "c", nil)
		if _, err := c.Put(ctx, k, &counter{0}); err != nil {
			t.Fatal(err)
		}
		attempts := 0
		_, err := c.RunInTransaction(ctx, func(tx *datastore.Transaction) error {
			attempts++
			var x counter
			if err := tx.Get(k, &x); err != nil {
				return err
			}
			if attempts == 1 {
				// Another writer (outside the transaction) gets there first.
				if _, err := c.Put(ctx, k, &counter{x.N + 100}); err != nil {
					return err
				}
			}
			_, err := tx.Put(k, &counter{x.N + 1})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if attempts != 2 {
			t.Errorf("the transaction ran %d times, want 2 (one conflict, one retry)", attempts)
		}
		var x counter
		if err := c.Get(ctx, k, &x); err != nil || x.N != 101 {
			t.Fatalf("N = %d (%v), want 101", x.N, err)
		}

		// With one attempt the conflict is the caller's.
		_, err = c.RunInTransaction(ctx, func(tx *datastore.Transaction) error {
			var x counter
			if err := tx.Get(k, &x); err != nil {
				return err
			}
			if _, err := c.Put(ctx, k, &counter{0}); err != nil {
				return err
			}
			_, err := tx.Put(k, &counter{x.N + 1})
			return err
		}, datastore.MaxAttempts(1))
		if !errors.Is(err, datastore.ErrConcurrentTransaction) {
			t.Fatalf("err = %v, want ErrConcurrentTransaction", err)
		}
	})
}

// TestTransactionsAcrossAPIs: a transaction of either API conflicts with
// a write of the other to what it read.
func TestTransactionsAcrossAPIs(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c, ae := context.Background(), tg.Cloud, tg.AE
		k := datastore.NameKey("Counter", "x", nil)
		ak := aeds.NewKey(ae, "Counter", "x", 0, nil)
		if _, err := c.Put(ctx, k, &counter{1}); err != nil {
			t.Fatal(err)
		}
		// Cloud transaction, appengine/v2 write.
		_, err := c.RunInTransaction(ctx, func(tx *datastore.Transaction) error {
			var x counter
			if err := tx.Get(k, &x); err != nil {
				return err
			}
			if _, err := aeds.Put(ae, ak, &counter{50}); err != nil {
				return err
			}
			_, err := tx.Put(k, &counter{x.N + 1})
			return err
		}, datastore.MaxAttempts(1))
		if !errors.Is(err, datastore.ErrConcurrentTransaction) {
			t.Fatalf("Cloud transaction after a v2 write: %v", err)
		}
		// appengine/v2 transaction, Cloud write.
		err = aeds.RunInTransaction(ae, func(tc context.Context) error {
			var x counter
			if err := aeds.Get(tc, ak, &x); err != nil {
				return err
			}
			if _, err := c.Put(ctx, k, &counter{60}); err != nil {
				return err
			}
			_, err := aeds.Put(tc, ak, &counter{x.N + 1})
			return err
		}, &aeds.TransactionOptions{Attempts: 1})
		if err != aeds.ErrConcurrentTransaction {
			t.Fatalf("v2 transaction after a Cloud write: %v", err)
		}
		var x counter
		if err := c.Get(ctx, k, &x); err != nil || x.N != 60 {
			t.Fatalf("N = %d (%v), want 60", x.N, err)
		}
		// A read-only transaction and a rollback write nothing.
		tx, err := c.NewTransaction(ctx, datastore.ReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Get(k, &x); err != nil || x.N != 60 {
			t.Fatalf("read-only Get: %d %v", x.N, err)
		}
		if _, err := tx.Put(k, &counter{0}); err != nil {
			t.Fatal(err) // buffered by the client
		}
		if _, err := tx.Commit(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("commit of a read-only transaction that writes: %v", err)
		}
		tx, err = c.NewTransaction(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Put(k, &counter{0}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, k, &x); err != nil || x.N != 60 {
			t.Fatalf("after a rollback N = %d (%v), want 60", x.N, err)
		}
	})
}

// TestMutations: Mutate's insert, update, upsert and delete, with the
// errors production gives.
func TestMutations(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c := context.Background(), tg.Cloud
		k := datastore.NameKey("Mut", "m", nil)
		if _, err := c.Mutate(ctx, datastore.NewInsert(k, &counter{1})); err != nil {
			t.Fatal(err)
		}
		_, err := c.Mutate(ctx, datastore.NewInsert(k, &counter{2}))
		if me, ok := err.(datastore.MultiError); !ok || status.Code(me[0]) != codes.AlreadyExists {
			if status.Code(err) != codes.AlreadyExists {
				t.Fatalf("insert of an existing key: %v", err)
			}
		}
		_, err = c.Mutate(ctx, datastore.NewUpdate(datastore.NameKey("Mut", "none", nil), &counter{1}))
		if status.Code(errors.Unwrap(err)) != codes.NotFound && status.Code(err) != codes.NotFound {
			if me, ok := err.(datastore.MultiError); !ok || status.Code(me[0]) != codes.NotFound {
				t.Fatalf("update of a missing key: %v", err)
			}
		}
		inc := datastore.IncompleteKey("Mut", nil)
		keys, err := c.Mutate(ctx,
			datastore.NewUpdate(k, &counter{3}),
			datastore.NewUpsert(datastore.NameKey("Mut", "u", nil), &counter{4}),
			datastore.NewInsert(inc, &counter{5}),
		)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 3 || keys[2].Incomplete() {
			t.Fatalf("keys %v", keys)
		}
		var x counter
		if err := c.Get(ctx, keys[2], &x); err != nil || x.N != 5 {
			t.Fatalf("the inserted entity: %v %v", x, err)
		}
		if _, err := c.Mutate(ctx, datastore.NewDelete(k), datastore.NewDelete(keys[2])); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, k, &x); err != datastore.ErrNoSuchEntity {
			t.Fatalf("after the delete: %v", err)
		}
		// Over production's limit of 500 mutations.
		var many []*datastore.Mutation
		for i := 0; i < 501; i++ {
			many = append(many, datastore.NewUpsert(datastore.IDKey("Mut", int64(i+1), nil), &counter{}))
		}
		if _, err := c.Mutate(ctx, many...); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("501 mutations: %v", err)
		}
	})
}

// TestTransactionBeginLater: with BeginLater the client begins its
// transaction in its first read (read_options.new_transaction), here an
// ancestor query, and commits it.
func TestTransactionBeginLater(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c := context.Background(), tg.Cloud
		parent := datastore.NameKey("Account", "acct", nil)
		if _, err := c.Put(ctx, datastore.NameKey("Entry", "e1", parent), &counter{5}); err != nil {
			t.Fatal(err)
		}
		_, err := c.RunInTransaction(ctx, func(tx *datastore.Transaction) error {
			var entries []counter
			if _, err := c.GetAll(ctx, datastore.NewQuery("Entry").Ancestor(parent).Transaction(tx), &entries); err != nil {
				return err
			}
			if len(entries) != 1 {
				return errors.New("the query found no entry")
			}
			_, err := tx.Put(datastore.NameKey("Entry", "e2", parent), &counter{entries[0].N + 1})
			return err
		}, datastore.BeginLater)
		if err != nil {
			t.Fatal(err)
		}
		var x counter
		if err := c.Get(ctx, datastore.NameKey("Entry", "e2", parent), &x); err != nil || x.N != 6 {
			t.Fatalf("e2: %v %v", x, err)
		}
	})
}
