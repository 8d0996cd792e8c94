package aelocal_test

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/mail"
	"google.golang.org/appengine/v2/taskqueue"
)

// Testing code that queues work: the task waits in its queue until the
// test runs it, and a failed run comes back after its backoff.
func ExampleServer_RunTasks() {
	srv, err := aelocal.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	// The app's signup handler queues a welcome mail.
	ctx := appengine.NewContext(srv.NewRequest("POST", "/signup", nil))
	task := taskqueue.NewPOSTTask("/tasks/welcome", url.Values{"to": {"juliet@example.org"}})
	if _, err := taskqueue.Add(ctx, task, ""); err != nil {
		panic(err)
	}

	// The app's worker; it fails the first time.
	tries := 0
	worker := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tries++; tries == 1 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		err := mail.Send(appengine.NewContext(r), &mail.Message{
			Sender:  "noreply@example.com",
			To:      []string{r.FormValue("to")},
			Subject: "Welcome",
			Body:    "Glad you are here.",
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})

	n, _ := srv.RunTasks("", worker)
	fmt.Println("ran:", n, "waiting:", len(srv.Tasks("")), "retries:", srv.Tasks("")[0].RetryCount)
	srv.FastForward(time.Second) // past the retry's backoff
	n, _ = srv.RunTasks("", worker)
	fmt.Println("ran:", n, "waiting:", len(srv.Tasks("")))
	for _, m := range srv.Mail() {
		fmt.Println("mail to", m.To, "subject", m.Subject)
	}
	// Output:
	// ran: 1 waiting: 1 retries: 1
	// ran: 1 waiting: 0
	// mail to [juliet@example.org] subject Welcome
}
