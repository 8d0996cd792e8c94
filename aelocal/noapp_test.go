package aelocal

import (
	"context"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestRequestWithoutAppNamesTheFix: a datastore request without an app ID
// is refused, as production refuses it, and the error says where the ID
// comes from and how to set it.
func TestRequestWithoutAppNamesTheFix(t *testing.T) {
	const fix = "export GAE_APPLICATION=" + DefaultAppID
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		_, err := rawCall(ctx, "Get", "appengine.v2.GetRequest", "appengine.v2.GetResponse", func(r pmsg) {
			k := r.AppendMsg("key")
			k.Set("app", "") // present, as proto2 wants it, and empty
			e := k.Mutable("path").AppendMsg("element")
			e.Set("type", "K")
			e.Set("name", "k")
		})
		wantAPIError(t, err, "BAD_REQUEST", "key 0 has no app (the app ID comes from GAE_APPLICATION where the app runs: "+fix+")")

		_, err = rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
			q.Set("app", "")
			q.Set("kind", "K")
		})
		wantAPIError(t, err, "BAD_REQUEST", "query has no app (the app ID comes from GAE_APPLICATION where the app runs: "+fix+")")

		// With the ID, the same calls are served.
		app := datastore.NewKey(ctx, "K", "k", 0, nil).AppID()
		if _, err := rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
			q.Set("app", app)
			q.Set("kind", "K")
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBeginTransactionWithoutAppNamesTheFix is the same for a transaction,
// over the bridge (in-process calls cannot begin one).
func TestBeginTransactionWithoutAppNamesTheFix(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	_, err := rawCall(ctx, "BeginTransaction", "appengine.v2.BeginTransactionRequest", "appengine.v2.Transaction", func(r pmsg) { r.Set("app", "") })
	wantAPIError(t, err, "BAD_REQUEST", "BeginTransaction has no app (the app ID comes from GAE_APPLICATION where the app runs: export GAE_APPLICATION="+DefaultAppID+")")
}
