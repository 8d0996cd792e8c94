package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Cloud purge deletes the expired sessions and removal markers of
// both stores, batch after batch from the query's cursor, leaves live
// ones, and answers as the bundled purge does.
func TestCloudPurge(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	var expired []string
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("expiredSession%02d", i)
		if i%2 == 1 {
			name = tier.RemovalKeyPrefix + name
		}
		_, err := e.client.Put(ctx, datastore.NameKey("sess_", name, nil), &tier.Entity{Expires: past, Value: []byte{1}})
		require.NoError(t, err)
		expired = append(expired, name)
	}
	live := e.newSession(bundled, nil, time.Hour)
	liveCloud := e.newSession(cloudNoCache, nil, time.Hour)

	h := PurgeExpiredSessFunc(e.client, &PurgeOptions{PurgeOptions: gaesession.PurgeOptions{BatchSize: 2, ExpiredFor: -1}})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/purge", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var res struct {
		Completed       bool
		Deleted, Failed int
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	assert.Equal(t, true, res.Completed)
	assert.Equal(t, 5, res.Deleted)
	assert.Equal(t, 0, res.Failed)
	for _, name := range expired {
		err := e.client.Get(ctx, datastore.NameKey("sess_", name, nil), &tier.Entity{})
		assert.ErrorIs(t, err, datastore.ErrNoSuchEntity, name)
	}
	assert.NotNil(t, e.entity(live))
	assert.NotNil(t, e.entity(liveCloud))
	assert.Len(t, logs.with("INFO", "deleted 5 expired sessions, 0 failed; 3 batches"), 1, "%v", logs.with())
	assert.Empty(t, logs.with("expiredSession"), "no session ID in the logs")
}

// CronOnly refuses a request that came from neither cron nor a task queue
// before any query.
func TestCloudPurgeCronOnly(t *testing.T) {
	e := newEnv(t)
	e.rpcs()
	h := PurgeExpiredSessFunc(e.client, &PurgeOptions{PurgeOptions: gaesession.PurgeOptions{CronOnly: true}})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/purge", nil))
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Empty(t, e.rpcs())

	req := httptest.NewRequest("GET", "/purge", nil)
	req.Header.Set("X-Appengine-Cron", "true")
	rec = httptest.NewRecorder()
	h(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"completed":true,"deleted":0,"failed":0}`, rec.Body.String())
}

// PurgeOptions.Namespace: the purge deletes the expired entities of its
// namespace only.
func TestCloudPurgeNamespace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	key := func(ns string) *datastore.Key {
		k := datastore.NameKey("sess_", "expiredSession00", nil)
		k.Namespace = ns
		return k
	}
	for _, ns := range []string{"", "tenant1"} {
		_, err := e.client.Put(ctx, key(ns), &tier.Entity{Expires: past, Value: []byte{1}})
		require.NoError(t, err)
	}
	h := PurgeExpiredSessFunc(e.client, &PurgeOptions{PurgeOptions: gaesession.PurgeOptions{ExpiredFor: -1}, Namespace: "tenant1"})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/purge", nil))
	assert.JSONEq(t, `{"completed":true,"deleted":1,"failed":0}`, rec.Body.String())
	assert.ErrorIs(t, e.client.Get(ctx, key("tenant1"), &tier.Entity{}), datastore.ErrNoSuchEntity)
	assert.NoError(t, e.client.Get(ctx, key(""), &tier.Entity{}), "the default namespace's stays")
}
