package aelocal

import (
	"net/http"
	"testing"
	"time"

	"google.golang.org/appengine/v2/taskqueue"
)

func TestTaskqueueConsoleActions(t *testing.T) {
	s := serverWithQueues(t, nil)
	ctx := middlewareContext(t, s)
	taskqueue.Add(ctx, &taskqueue.Task{Name: "later", Delay: time.Hour}, "")
	taskqueue.Add(ctx, &taskqueue.Task{Name: "gone", Delay: time.Hour}, "")
	taskqueue.Add(ctx, &taskqueue.Task{Name: "w", Method: "PULL"}, "pull")

	st := s.queueStatuses()
	names := make([]string, len(st))
	for i, q := range st {
		names[i] = q.Name
	}
	if len(st) != 5 || names[0] != "careful" || names[1] != "default" {
		t.Fatalf("queues %q", names)
	}
	def := st[1]
	if def.Tasks != 2 || def.Rate != "5/s" || def.BucketSize != 5 || def.OldestETA.IsZero() {
		t.Fatalf("default queue %+v", def)
	}

	if err := s.runTaskNow("default", "later"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.RunTasks("", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})); n != 1 {
		t.Fatalf("ran %d, want the task made due", n)
	}
	if err := s.deleteTask("default", "gone"); err != nil {
		t.Fatal(err)
	}
	// Deleted from the console, a name can be used again at once.
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "gone"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.flushQueue("pull"); err != nil {
		t.Fatal(err)
	}
	wantNames(t, s, "pull")
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "w", Method: "PULL"}, "pull"); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{s.runTaskNow("nosuch", "x"), s.runTaskNow("default", "nosuch"), s.deleteTask("default", "nosuch"), s.flushQueue("nosuch")} {
		if err == nil {
			t.Error("an action on a missing queue or task did not fail")
		}
	}
}
