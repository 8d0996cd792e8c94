package aelocal

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// consoleBenchEntities is the size of the datastore the console's pages
// are timed on.
const consoleBenchEntities = 100000

type benchRecord struct {
	N       int
	Name    string
	Group   int
	Created time.Time
	Note    string `datastore:",noindex"`
}

// BenchmarkConsolePages times whole console pages, over HTTP, on a
// datastore of 100,000 entities of one kind (plus a small second kind):
//
//	go test -run '^$' -bench BenchmarkConsolePages -benchtime 20x ./aelocal
func BenchmarkConsolePages(b *testing.B) {
	s := newTestServer(b)
	ctx := middlewareContext(b, s)
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for lo := 0; lo < consoleBenchEntities; lo += 500 {
		keys := make([]*datastore.Key, 0, 500)
		vals := make([]benchRecord, 0, 500)
		for i := lo; i < lo+500; i++ {
			keys = append(keys, datastore.NewKey(ctx, "Record", "", int64(i+1), nil))
			vals = append(vals, benchRecord{N: i + 1, Name: fmt.Sprintf("record-%06d", i+1), Group: i % 100,
				Created: start.Add(time.Duration(i) * time.Minute), Note: "a note that is not indexed"})
		}
		if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Other", "one", 0, nil), &benchRecord{N: 1}); err != nil {
		b.Fatal(err)
	}
	key := datastore.NewKey(ctx, "Record", "", 54321, nil).Encode()
	for _, p := range []struct{ name, path string }{
		{"kinds", "/datastore"},
		{"first-page", "/datastore/kind?kind=Record"},
		{"sorted-by-property", "/datastore/kind?kind=Record&sort=Name&desc=1"},
		{"page-at-50000", "/datastore/kind?kind=Record&offset=50000"},
		{"filter-equality", "/datastore/kind?kind=Record&fprop=Group&fop=eq&fval=42&ftype=int"},
		{"filter-inequality", "/datastore/kind?kind=Record&fprop=Created&fop=ge&fval=2024-02-01T00:00:00Z&ftype=time"},
		{"entity", "/datastore/entity?key=" + key},
		{"memcache", "/memcache?key=k"},
		{"rpcs", "/rpcs"},
	} {
		b.Run(p.name, func(b *testing.B) {
			for range b.N {
				resp, err := http.Get(s.URL() + p.path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d\n%s", p.path, resp.StatusCode, body)
				}
			}
		})
	}
}
