package aelocal

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/mail"
	"google.golang.org/appengine/v2/taskqueue"
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
	benchPages(b, s, []benchPage{
		{"kinds", "/datastore"},
		{"first-page", "/datastore/kind?kind=Record"},
		{"sorted-by-property", "/datastore/kind?kind=Record&sort=Name&desc=1"},
		{"page-at-50000", "/datastore/kind?kind=Record&offset=50000"},
		{"filter-equality", "/datastore/kind?kind=Record&fprop=Group&fop=eq&fval=42&ftype=int"},
		{"filter-inequality", "/datastore/kind?kind=Record&fprop=Created&fop=ge&fval=2024-02-01T00:00:00Z&ftype=time"},
		{"entity", "/datastore/entity?key=" + key},
		{"memcache", "/memcache?key=k"},
		{"rpcs", "/rpcs"},
	})
}

// consoleBenchTasks is the length of the queue the task pages are timed
// on.
const consoleBenchTasks = 100000

// BenchmarkConsoleTaskAndMailPages times the task queue and mail pages,
// over HTTP, on a queue of 100,000 tasks and the 10,000 messages the
// server keeps at most:
//
//	go test -run '^$' -bench BenchmarkConsoleTaskAndMailPages -benchtime 20x ./aelocal
func BenchmarkConsoleTaskAndMailPages(b *testing.B) {
	s := newTestServer(b)
	ctx := middlewareContext(b, s)
	for lo := 0; lo < consoleBenchTasks; lo += 100 {
		batch := make([]*taskqueue.Task, 0, 100)
		for i := lo; i < lo+100; i++ {
			batch = append(batch, &taskqueue.Task{Path: "/work?i=" + strconv.Itoa(i), Payload: []byte("payload"), Delay: time.Duration(i%5000) * time.Second})
		}
		if _, err := taskqueue.AddMulti(ctx, batch, ""); err != nil {
			b.Fatal(err)
		}
	}
	for i := range mailMaxKept {
		m := &mail.Message{Sender: "app@example.com", To: []string{"user@example.com"}, Subject: "Message " + strconv.Itoa(i),
			Body: "Hello,\nthis is message " + strconv.Itoa(i) + ".", Attachments: []mail.Attachment{{Name: "a.txt", Data: []byte("attached")}}}
		if err := mail.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	name := s.Tasks("")[54321].Name
	benchPages(b, s, []benchPage{
		{"queues", "/taskqueues"},
		{"queue-first-page", "/taskqueues/queue?name=default"},
		{"queue-page-at-50000", "/taskqueues/queue?name=default&offset=50000"},
		{"queue-500-a-page", "/taskqueues/queue?name=default&n=500"},
		{"task", "/taskqueues/task?queue=default&name=" + name},
		{"mail-first-page", "/mail"},
		{"mail-last-page", "/mail?offset=9980"},
		{"mail-message", "/mail/message?id=5000"},
	})
}

// benchPage is a console page to time.
type benchPage struct{ name, path string }

// benchPages times each page, fetched over HTTP and read whole, in a
// sub-benchmark of its own.
func benchPages(b *testing.B, s *Server, pages []benchPage) {
	for _, p := range pages {
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
