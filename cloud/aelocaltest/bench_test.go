package aelocaltest

import (
	"context"
	"testing"

	"cloud.google.com/go/datastore"
	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	aeds "google.golang.org/appengine/v2/datastore"
)

type benchEntity struct {
	N    int64
	Name string
	Body string `datastore:",noindex"`
}

// BenchmarkAPIs times the same datastore operations through the Cloud
// client (Cloud Datastore API, gRPC) and through appengine/v2
// (datastore_v3 over the service bridge), against one in-process server
// over loopback: a lookup, a put, the first 20 rows of a filtered and
// ordered query over 1,000 entities, and a transaction (get and put).
func BenchmarkAPIs(b *testing.B) {
	srv := aelocal.RunTOptions(b, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	b.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
	b.Setenv("DATASTORE_PROJECT_ID", srv.CloudProjectID())
	bg := context.Background()
	c, err := datastore.NewClient(bg, "")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ae := appengine.NewContext(srv.NewRequest("GET", "/", nil))

	keys := make([]*datastore.Key, 1000)
	ents := make([]*benchEntity, 1000)
	for i := range keys {
		keys[i] = datastore.IDKey("Bench", int64(i+1), nil)
		ents[i] = &benchEntity{N: int64(i), Name: "name", Body: "a body of some length, as entities have"}
	}
	for i := 0; i < len(keys); i += 500 {
		if _, err := c.PutMulti(bg, keys[i:i+500], ents[i:i+500]); err != nil {
			b.Fatal(err)
		}
	}
	aeKey := func(i int) *aeds.Key { return aeds.NewKey(ae, "Bench", "", int64(i+1), nil) }

	b.Run("lookup/cloud", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var e benchEntity
			if err := c.Get(bg, keys[i%1000], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup/v3", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var e benchEntity
			if err := aeds.Get(ae, aeKey(i%1000), &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put/cloud", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := c.Put(bg, datastore.IDKey("BenchPut", int64(i%1000+1), nil), ents[i%1000]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put/v3", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := aeds.Put(ae, aeds.NewKey(ae, "BenchPut", "", int64(i%1000+1), nil), ents[i%1000]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("query20/cloud", func(b *testing.B) {
		q := datastore.NewQuery("Bench").FilterField("N", ">=", 500).Order("N").Limit(20)
		for i := 0; i < b.N; i++ {
			var res []benchEntity
			if _, err := c.GetAll(bg, q, &res); err != nil || len(res) != 20 {
				b.Fatal(len(res), err)
			}
		}
	})
	b.Run("query20/v3", func(b *testing.B) {
		q := aeds.NewQuery("Bench").Filter("N >=", 500).Order("N").Limit(20)
		for i := 0; i < b.N; i++ {
			var res []benchEntity
			if _, err := q.GetAll(ae, &res); err != nil || len(res) != 20 {
				b.Fatal(len(res), err)
			}
		}
	})
	b.Run("transaction/cloud", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			k := keys[i%1000]
			_, err := c.RunInTransaction(bg, func(tx *datastore.Transaction) error {
				var e benchEntity
				if err := tx.Get(k, &e); err != nil {
					return err
				}
				_, err := tx.Put(k, &e)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transaction/v3", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			k := aeKey(i % 1000)
			err := aeds.RunInTransaction(ae, func(tc context.Context) error {
				var e benchEntity
				if err := aeds.Get(tc, k, &e); err != nil {
					return err
				}
				_, err := aeds.Put(tc, k, &e)
				return err
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStartBothAPIs times what aetest-style tests pay per server: a
// server with both APIs started, a Cloud client connected and its first
// call answered, and the server closed.
func BenchmarkStartBothAPIs(b *testing.B) {
	bg := context.Background()
	for i := 0; i < b.N; i++ {
		srv, err := aelocal.NewServerOptions(&aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		b.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
		c, err := datastore.NewClient(bg, srv.CloudProjectID())
		if err != nil {
			b.Fatal(err)
		}
		var e benchEntity
		if err := c.Get(bg, datastore.NameKey("K", "k", nil), &e); err != datastore.ErrNoSuchEntity {
			b.Fatal(err)
		}
		c.Close()
		srv.Close()
	}
}
