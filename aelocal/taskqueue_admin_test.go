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

	// Run now: claimed whatever its ETA, and finished as a run of the
	// dispatcher is.
	run, err := s.claimTask("default", "later")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.claimTask("default", "later"); err == nil {
		t.Fatal("a task being run was claimed again")
	}
	if n, _ := s.RunTasks("", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})); n != 0 {
		t.Fatalf("RunTasks ran %d tasks; none is due but the claimed one, which runs already", n)
	}
	s.taskqueue.finish(run, http.StatusOK)
	if _, _, err := s.queueTask("default", "later"); err == nil {
		t.Fatal("a task run with success is still in the queue")
	}
	if _, err := s.claimTask("pull", "w"); err == nil {
		t.Fatal("a pull task was claimed for a run")
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
	for _, err := range []error{claimErr(s.claimTask("nosuch", "x")), claimErr(s.claimTask("default", "nosuch")), s.deleteTask("default", "nosuch"), s.flushQueue("nosuch")} {
		if err == nil {
			t.Error("an action on a missing queue or task did not fail")
		}
	}
}

func claimErr(_ taskRun, err error) error { return err }
