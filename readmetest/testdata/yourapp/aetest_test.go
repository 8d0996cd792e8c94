package main

import (
	"net/http/httptest"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/aetest"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/user"
)

// TestWithAetest is an app's aetest suite on appengine/v2, unchanged from
// the days of dev_appserver.py: aetest starts the program that
// APPENGINE_DEV_APPSERVER_BINARY names, here cmd/aelocal, and the app's
// handler (README's Usage) runs on requests of that instance.
func TestWithAetest(t *testing.T) {
	inst, err := aetest.NewInstance(&aetest.Options{StronglyConsistentDatastore: true, SuppressDevAppServerLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()

	req, err := inst.NewRequest("GET", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler(rec, req)
	if rec.Body.String() != "visit 1\n" {
		t.Fatalf("first visit: %q", rec.Body)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("first visit set cookies %v", cookies)
	}

	req, err = inst.NewRequest("GET", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(cookies[0])
	aetest.Login(&user.User{Email: "ann@example.com"}, req)
	rec = httptest.NewRecorder()
	handler(rec, req)
	if rec.Body.String() != "visit 2\n" {
		t.Fatalf("second visit: %q", rec.Body)
	}

	ctx := appengine.NewContext(req)
	if u := user.Current(ctx); u == nil || u.Email != "ann@example.com" {
		t.Errorf("user: %v", u)
	}
	if n, err := datastore.NewQuery("sess_").Count(ctx); err != nil || n != 1 {
		t.Errorf("sessions in the datastore: %d, %v", n, err)
	}
}
