package gaesession

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// The purge tests share no state but the log hook; none of them is
// parallel.

func newPurgeServer(t testing.TB) *aelocal.Server { return newTestEnv(t).srv }

// purgeCtx returns an App Engine context whose calls srv serves.
func purgeCtx(srv *aelocal.Server) context.Context {
	return appengine.NewContext(srv.NewRequest("GET", "/", nil))
}

// purgePutSessions stores n session entities of kind with key names
// "<prefix>-<16 digits>" (valid session IDs) and the given expiry, minus i
// seconds for the i-th, with datastore.PutMulti in chunks of 500.
func purgePutSessions(t testing.TB, ctx context.Context, kind, prefix string, n int, exp time.Time) []*datastore.Key {
	t.Helper()
	keys := make([]*datastore.Key, n)
	ents := make([]SessEntity, n)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, kind, fmt.Sprintf("%s-%016d", prefix, i), 0, nil)
		ents[i] = SessEntity{Expires: exp.Add(-time.Duration(i) * time.Second), Value: []byte("value of " + keys[i].StringID())}
	}
	for i := 0; i < n; i += 500 {
		j := min(i+500, n)
		if _, err := datastore.PutMulti(ctx, keys[i:j], ents[i:j]); err != nil {
			t.Fatalf("PutMulti: %v", err)
		}
	}
	return keys
}

// purgeDue returns an expiry that the purge acts on at now, with the
// default PurgeOptions.ExpiredFor.
func purgeDue(now time.Time) time.Time { return now.Add(-defaultExpiredFor - time.Second) }

// purgeExisting returns how many of keys are still stored, and fails the test if
// one that is stored does not hold what purgePutSessions put there.
func purgeExisting(t testing.TB, ctx context.Context, keys []*datastore.Key) int {
	t.Helper()
	n := 0
	for i := 0; i < len(keys); i += 500 {
		chunk := keys[i:min(i+500, len(keys))]
		ents := make([]SessEntity, len(chunk))
		err := datastore.GetMulti(ctx, chunk, ents)
		var me appengine.MultiError
		switch {
		case err == nil:
			me = make(appengine.MultiError, len(chunk))
		case errors.As(err, &me):
		default:
			t.Fatalf("GetMulti: %v", err)
		}
		for j, e := range me {
			switch {
			case e == nil:
				n++
				if want := "value of " + chunk[j].StringID(); string(ents[j].Value) != want {
					t.Errorf("%s holds %q, want %q", chunk[j].StringID(), ents[j].Value, want)
				}
			case errors.Is(e, datastore.ErrNoSuchEntity):
			default:
				t.Fatalf("GetMulti: %v", e)
			}
		}
	}
	return n
}

// purgeRecorder is a ResponseRecorder that counts WriteHeader calls, to
// prove that a response is written once.
type purgeRecorder struct {
	*httptest.ResponseRecorder
	calls int
}

func (h *purgeRecorder) WriteHeader(code int) {
	h.calls++
	h.ResponseRecorder.WriteHeader(code)
}

type purgeResult struct {
	code         int
	headerWrites int
	contentType  string
	body         string
	resp         purgeResponse
}

// callPurge serves one request to h with the given headers. ctxWrap, if
// not nil, replaces the request's (App Engine) context.
func callPurge(t testing.TB, srv *aelocal.Server, h http.HandlerFunc, header map[string]string, ctxWrap func(context.Context) context.Context) purgeResult {
	t.Helper()
	req := srv.NewRequest("GET", "/purge", nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if ctxWrap != nil {
		req = req.WithContext(ctxWrap(req.Context()))
	}
	rec := &purgeRecorder{ResponseRecorder: httptest.NewRecorder()}
	h(rec, req)
	r := purgeResult{
		code:         rec.Code,
		headerWrites: rec.calls,
		contentType:  rec.Header().Get("Content-Type"),
		body:         rec.Body.String(),
	}
	if r.contentType == "application/json" {
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r.resp); err != nil {
			t.Fatalf("response %q: %v", r.body, err)
		}
	}
	return r
}

// assertNoPurgeIDs fails if a log line names a session.
func assertNoPurgeIDs(t *testing.T, l *logCapture) {
	t.Helper()
	for _, line := range l.with() {
		if strings.Contains(line, "expired-") || strings.Contains(line, "live-") {
			t.Errorf("log line names a session: %s", line)
		}
	}
}

func purgeWantResponse(t *testing.T, r purgeResult, completed bool, deleted, failed int) {
	t.Helper()
	if r.code != http.StatusOK || r.contentType != "application/json" {
		t.Fatalf("got %d %q %q, want 200 application/json", r.code, r.contentType, r.body)
	}
	if r.headerWrites != 1 {
		t.Errorf("WriteHeader called %d times, want 1", r.headerWrites)
	}
	want := purgeResponse{Completed: completed, Deleted: deleted, Failed: failed}
	if r.resp != want {
		t.Errorf("response %s, want %+v", r.body, want)
	}
}

func purgeWantRPCs(t *testing.T, srv *aelocal.Server, want map[string]int64) {
	t.Helper()
	got := srv.Stats()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d calls, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestPurgeDeletesExpiredKeepsLive(t *testing.T) {
	const expired, live = 2000, 100
	for _, batch := range []int{500, 100} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			srv := newPurgeServer(t)
			ctx := purgeCtx(srv)
			now := time.Now()
			exp := purgePutSessions(t, ctx, "sess_", "expired", expired, purgeDue(now))
			liv := purgePutSessions(t, ctx, "sess_", "live", live, now.Add(time.Hour))
			// Expired, but not for ExpiredFor yet: kept.
			recent := purgePutSessions(t, ctx, "sess_", "recent", live, now.Add(-time.Second))
			srv.ResetStats()
			logs := captureLogs(t)

			r := callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{BatchSize: batch}), nil, nil)
			purgeWantResponse(t, r, true, expired, 0)

			// Keys-only queries, each from the previous one's end cursor:
			// BatchSize(batch) makes RunQuery return the whole batch, so no
			// Next is needed; expired/batch full batches, then one query
			// that finds nothing (2000 is a multiple of batch). One
			// DeleteMulti per batch.
			purgeWantRPCs(t, srv, map[string]int64{
				"datastore_v3.RunQuery": expired/int64(batch) + 1,
				"datastore_v3.Next":     0,
				"datastore_v3.Delete":   expired / int64(batch),
				"datastore_v3.Put":      0,
			})
			if n := purgeExisting(t, ctx, exp); n != 0 {
				t.Errorf("%d expired sessions left", n)
			}
			if n := purgeExisting(t, ctx, liv); n != live {
				t.Errorf("%d live sessions left, want %d", n, live)
			}
			if n := purgeExisting(t, ctx, recent); n != live {
				t.Errorf("%d recently expired sessions left, want %d", n, live)
			}
			if got := logs.with("INFO", "deleted 2000 expired sessions, 0 failed", "completed: true"); len(got) != 1 {
				t.Errorf("summary lines: %q", logs.with())
			}
			assertNoPurgeIDs(t, logs)
		})
	}
}

func TestPurgeLegacyFuncKind(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	now := time.Now()
	mine := purgePutSessions(t, ctx, "mysess", "expired", 700, purgeDue(now))
	other := purgePutSessions(t, ctx, "sess_", "expired", 50, purgeDue(now))
	srv.ResetStats()

	// No cron header: the legacy handler serves anyone, as the original.
	r := callPurge(t, srv, PurgeExpiredSessFromDSFunc("mysess"), nil, nil)
	purgeWantResponse(t, r, true, 700, 0)
	// Batches of 500: a full one and a short one, which is known to be
	// the last without another query.
	purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 2, "datastore_v3.Delete": 2})
	if n := purgeExisting(t, ctx, mine); n != 0 {
		t.Errorf("%d expired sessions left", n)
	}
	if n := purgeExisting(t, ctx, other); n != 50 {
		t.Errorf("another kind lost entities: %d left of 50", n)
	}

	r = callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	purgeWantResponse(t, r, true, 50, 0)
	if n := purgeExisting(t, ctx, other); n != 0 {
		t.Errorf("%d expired sessions of the default kind left", n)
	}
}

func TestPurgeNothingToDo(t *testing.T) {
	srv := newPurgeServer(t)
	r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	purgeWantResponse(t, r, true, 0, 0)
	purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 1, "datastore_v3.Delete": 0})
}

func TestPurgeDeadline(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	keys := purgePutSessions(t, ctx, "sess_", "expired", 2000, purgeDue(time.Now()))
	srv.ResetStats()

	// A Deadline of 1ns has passed before the first batch could start, or
	// at the latest once it is done.
	r := callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{Deadline: time.Nanosecond}), nil, nil)
	first := r.resp.Deleted
	purgeWantResponse(t, r, false, first, 0)
	if first > 500 {
		t.Errorf("deleted %d after the deadline, want at most one batch", first)
	}
	if n := purgeExisting(t, ctx, keys); n != 2000-first {
		t.Errorf("%d left, want %d", n, 2000-first)
	}

	r = callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(nil), nil, nil)
	purgeWantResponse(t, r, true, 2000-first, 0)
	if n := purgeExisting(t, ctx, keys); n != 0 {
		t.Errorf("%d expired sessions left", n)
	}
}

func TestPurgeDeadlineWithLatency(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	keys := purgePutSessions(t, ctx, "sess_", "expired", 1000, purgeDue(time.Now()))
	srv.ResetStats()
	// The first query alone outlasts the Deadline: the run stops after the
	// first batch (whose delete it waits for) instead of going on.
	srv.SetLatency("datastore_v3.RunQuery", 200*time.Millisecond)
	r := callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{Deadline: 100 * time.Millisecond, BatchSize: 100}), nil, nil)
	st := srv.Stats()
	q := st["datastore_v3.RunQuery"]
	if q > 1 || st["datastore_v3.Delete"] != q {
		t.Errorf("RPCs after the deadline: %v", st)
	}
	purgeWantResponse(t, r, false, 100*int(q), 0)
	if n := purgeExisting(t, ctx, keys); n != 1000-100*int(q) {
		t.Errorf("%d left, want %d", n, 1000-100*int(q))
	}
}

func TestPurgeContextDeadlineMargin(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	keys := purgePutSessions(t, ctx, "sess_", "expired", 1000, purgeDue(time.Now()))
	srv.ResetStats()

	// 10s left in the request is within the default 30s margin: no batch.
	short := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, short)
	purgeWantResponse(t, r, false, 0, 0)
	purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 0, "datastore_v3.Delete": 0})

	// A smaller margin leaves time for the job.
	r = callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{SafetyMargin: time.Second}), nil, short)
	purgeWantResponse(t, r, true, 1000, 0)
	if n := purgeExisting(t, ctx, keys); n != 0 {
		t.Errorf("%d expired sessions left", n)
	}

	// A request whose context has ended does nothing.
	purgePutSessions(t, ctx, "sess_", "expired", 10, purgeDue(time.Now()))
	cancelled := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx
	}
	r = callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{SafetyMargin: -1}), nil, cancelled)
	purgeWantResponse(t, r, false, 0, 0)
}

func TestPurgeQueryError(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	keys := purgePutSessions(t, ctx, "sess_", "expired", 300, purgeDue(time.Now()))
	srv.ResetStats()
	logs := captureLogs(t)

	srv.FailNext("datastore_v3", "RunQuery", 1)
	r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	if r.code != http.StatusInternalServerError || r.headerWrites != 1 {
		t.Fatalf("got status %d written %d times, want one 500", r.code, r.headerWrites)
	}
	if !strings.Contains(r.body, `"completed":false`) || r.resp.Error == "" {
		t.Errorf("body %q", r.body)
	}
	if strings.Count(r.body, "{") != 1 {
		t.Errorf("body written more than once: %q", r.body)
	}
	purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 1, "datastore_v3.Next": 0, "datastore_v3.Delete": 0})
	if got := logs.with("ERROR", "querying expired sessions failed"); len(got) != 1 {
		t.Errorf("error lines: %q", logs.with())
	}
	if n := purgeExisting(t, ctx, keys); n != 300 {
		t.Errorf("%d left, want 300", n)
	}

	// The next run works.
	r = callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	purgeWantResponse(t, r, true, 300, 0)
}

func TestPurgeDeleteFailure(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		srv := newPurgeServer(t)
		ctx := purgeCtx(srv)
		keys := purgePutSessions(t, ctx, "sess_", "expired", 2000, purgeDue(time.Now()))
		srv.ResetStats()
		logs := captureLogs(t)

		// One transient failure: the batch is sent again and goes through.
		srv.FailNext("datastore_v3", "Delete", 1)
		r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
		purgeWantResponse(t, r, true, 2000, 0)
		purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 5, "datastore_v3.Delete": 5})
		if got := logs.with("WARNING", "retrying"); len(got) != 1 {
			t.Errorf("retry lines: %q", logs.with())
		}
		if n := purgeExisting(t, ctx, keys); n != 0 {
			t.Errorf("%d expired sessions left", n)
		}
		assertNoPurgeIDs(t, logs)
	})

	t.Run("given up", func(t *testing.T) {
		srv := newPurgeServer(t)
		ctx := purgeCtx(srv)
		keys := purgePutSessions(t, ctx, "sess_", "expired", 2000, purgeDue(time.Now()))
		live := purgePutSessions(t, ctx, "sess_", "live", 100, time.Now().Add(time.Hour))
		srv.ResetStats()
		logs := captureLogs(t)

		// The first batch fails twice, more than the one retry: it is
		// counted as failed, and the purge goes on with the next batches,
		// continuing from the first batch's cursor rather than fetching
		// the failed keys again.
		srv.FailNext("datastore_v3", "Delete", purgeDeleteAttempts)
		r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
		purgeWantResponse(t, r, false, 1500, 500)
		purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 5, "datastore_v3.Delete": 4 + purgeDeleteAttempts - 1})
		if got := logs.with("ERROR", "deleting 500 of a batch of 500 expired sessions failed"); len(got) != 1 {
			t.Errorf("failure lines: %q", logs.with())
		}
		if got := logs.with("INFO", "deleted 1500 expired sessions, 500 failed", "completed: false"); len(got) != 1 {
			t.Errorf("summary lines: %q", logs.with())
		}
		if n := purgeExisting(t, ctx, keys); n != 500 {
			t.Errorf("%d expired sessions left, want the 500 that failed", n)
		}

		// The next run deletes the leftovers.
		srv.ResetStats()
		r = callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
		purgeWantResponse(t, r, true, 500, 0)
		purgeWantRPCs(t, srv, map[string]int64{"datastore_v3.RunQuery": 2, "datastore_v3.Delete": 1})
		if n := purgeExisting(t, ctx, keys); n != 0 {
			t.Errorf("%d expired sessions left", n)
		}
		if n := purgeExisting(t, ctx, live); n != 100 {
			t.Errorf("%d live sessions left, want 100", n)
		}
		assertNoPurgeIDs(t, logs)
	})
}

// ExpiredFor sets how long an entity must have been expired before the
// purge deletes it; a negative value deletes every expired entity.
func TestPurgeExpiredFor(t *testing.T) {
	srv := newPurgeServer(t)
	ctx := purgeCtx(srv)
	now := time.Now()
	older := purgePutSessions(t, ctx, "sess_", "expired", 30, now.Add(-30*time.Minute))
	newer := purgePutSessions(t, ctx, "sess_", "recent", 20, now.Add(-10*time.Minute))
	live := purgePutSessions(t, ctx, "sess_", "live", 10, now.Add(time.Minute))

	r := callPurge(t, srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	purgeWantResponse(t, r, true, 0, 0) // the default waits 49 hours

	r = callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{ExpiredFor: 21 * time.Minute}), nil, nil)
	purgeWantResponse(t, r, true, 30, 0)
	if n := purgeExisting(t, ctx, older); n != 0 {
		t.Errorf("%d sessions expired for 30 minutes left", n)
	}
	if n := purgeExisting(t, ctx, newer); n != 20 {
		t.Errorf("%d sessions expired for 10 minutes left, want 20", n)
	}

	r = callPurge(t, srv, PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{ExpiredFor: -1}), nil, nil)
	purgeWantResponse(t, r, true, 20, 0)
	if n := purgeExisting(t, ctx, live); n != 10 {
		t.Errorf("%d live sessions left, want 10", n)
	}
}

func TestPurgeCronOnly(t *testing.T) {
	cases := []struct {
		name   string
		header map[string]string
		legacy bool
		allow  bool
	}{
		{name: "no header", allow: false},
		{name: "cron false", header: map[string]string{"X-Appengine-Cron": "false"}, allow: false},
		{name: "empty queue", header: map[string]string{"X-AppEngine-QueueName": ""}, allow: false},
		{name: "cron", header: map[string]string{"X-Appengine-Cron": "true"}, allow: true},
		{name: "task queue", header: map[string]string{"X-AppEngine-QueueName": "default"}, allow: true},
		{name: "legacy no header", legacy: true, allow: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newPurgeServer(t)
			ctx := purgeCtx(srv)
			keys := purgePutSessions(t, ctx, "sess_", "expired", 20, purgeDue(time.Now()))
			srv.ResetStats()

			h := PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{CronOnly: true})
			if c.legacy {
				h = PurgeExpiredSessFromDSFunc("")
			}
			r := callPurge(t, srv, h, c.header, nil)
			if !c.allow {
				if r.code != http.StatusForbidden {
					t.Fatalf("got %d %q, want 403", r.code, r.body)
				}
				if got := srv.Stats(); len(got) != 0 {
					for k := range got {
						if strings.HasPrefix(k, "datastore_v3.") {
							t.Errorf("refused request made RPCs: %v", got)
							break
						}
					}
				}
				if n := purgeExisting(t, ctx, keys); n != 20 {
					t.Errorf("%d left, want 20", n)
				}
				return
			}
			purgeWantResponse(t, r, true, 20, 0)
		})
	}
}

func TestPurgeOptionsDefaults(t *testing.T) {
	cases := []struct {
		in   *PurgeOptions
		want purgeConfig
	}{
		{nil, purgeConfig{kind: "sess_", deadline: 8 * time.Minute, batch: 500, margin: 30 * time.Second, expiredFor: 49 * time.Hour}},
		{&PurgeOptions{BatchSize: -1, Deadline: -1}, purgeConfig{kind: "sess_", deadline: 8 * time.Minute, batch: 500, margin: 30 * time.Second, expiredFor: 49 * time.Hour}},
		{&PurgeOptions{BatchSize: 501, SafetyMargin: -1, ExpiredFor: -1}, purgeConfig{kind: "sess_", deadline: 8 * time.Minute, batch: 500}},
		{
			&PurgeOptions{DSEntityName: "k", Deadline: time.Minute, BatchSize: 1, SafetyMargin: time.Second, ExpiredFor: 21 * time.Minute, CronOnly: true},
			purgeConfig{kind: "k", deadline: time.Minute, batch: 1, margin: time.Second, expiredFor: 21 * time.Minute, cronOnly: true},
		},
	}
	for _, c := range cases {
		if got := newPurgeConfig(c.in); got != c.want {
			t.Errorf("newPurgeConfig(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestPurgeRedactKeys(t *testing.T) {
	ctx := context.Background()
	id := "AbCdEfGhIjKlMnOpQrStUvWx"
	keys := []*datastore.Key{datastore.NewKey(ctx, "sess_", id, 0, nil), datastore.NewKey(ctx, "sess_", "x", 0, nil)}
	p := &purge[*datastore.Key]{tier: &datastorePurge{kind: "sess_"}}
	got := p.redactKeys(errors.New("cannot delete sess_:"+id+" now x"), keys)
	if strings.Contains(got, id) || !strings.Contains(got, LogID(id)) || !strings.Contains(got, " now x") {
		t.Errorf("redactKeys: %q", got)
	}
}

// ExamplePurgeExpiredSessFromDSFuncOptions registers a purge handler that
// only App Engine cron (and task queues) may run. A cron.yaml entry calls
// it every 30 minutes:
//
//	cron:
//	- description: purge expired sessions
//	  url: /demo/purge
//	  schedule: every 30 minutes
func ExamplePurgeExpiredSessFromDSFuncOptions() {
	http.HandleFunc("/demo/purge", PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{
		CronOnly: true, // 403 for anything but cron and task queue requests
	}))
	// appengine.Main() serves the handlers.
}
