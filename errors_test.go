package gaesession

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// What the store says when a save fails: true log lines without session
// IDs, and SaveError for the app.

// quotingCtx is an App Engine context of e whose failing calls come back
// with the session ID added to the error text, as a backend that quotes
// the key in its messages would send them.
func quotingCtx(e *testEnv, id string) context.Context {
	return appengine.WithAPICallFunc(e.ctx(), func(ctx context.Context, service, method string, in, out gproto.Message) error {
		err := appengine.APICall(ctx, service, method, in, out)
		if err != nil && !errors.Is(err, memcache.ErrCacheMiss) && !errors.Is(err, datastore.ErrNoSuchEntity) {
			return fmt.Errorf("%w (key %s, memcache key %s)", err, id, id)
		}
		return err
	})
}

// Service errors may quote the key, which is the session ID; the store
// redacts it from every log line and from SaveError. A batch call's error
// is redacted of every session of the batch.
func TestErrorTextsAreRedacted(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	ids := []string{e.newSession(nil, time.Hour), e.newSession(nil, time.Hour)}

	st := NewMemcacheStore(quotingCtx(e, ids[1]))
	for _, id := range ids {
		st.Get(id).SetAttr("n", 2)
	}
	e.srv.FailNext("memcache", "", faultDown)
	e.srv.FailNext("datastore_v3", "", faultDown)
	st.Close() // one PutMulti, whose error quotes the second ID
	err := SaveError(st)
	require.Error(t, err)
	for _, id := range ids {
		assert.NotContains(t, err.Error(), id)
	}

	st = NewMemcacheStore(quotingCtx(e, ids[1]))
	assert.Nil(t, st.Get(ids[1]))
	st.Remove(idOnly{ids[1]})
	st.Close()
	require.NotEmpty(t, e.logged("ERROR"))
	for _, l := range e.allLogs() {
		for _, id := range ids {
			assert.NotContains(t, l, id)
		}
	}
	assert.NotEmpty(t, e.logged("ERROR", "(key "+LogID(ids[1])), "the text around the ID stays")
	err = SaveError(st)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), ids[1])
}

// idOnly is a session of which Remove needs the ID and Timeout only.
type idOnly struct{ id string }

func (s idOnly) ID() string { return s.id }

func (idOnly) Timeout() time.Duration        { return time.Hour }
func (idOnly) New() bool                     { return false }
func (idOnly) CAttr(string) interface{}      { return nil }
func (idOnly) Attr(string) interface{}       { return nil }
func (idOnly) SetAttr(string, interface{})   {}
func (idOnly) Attrs() map[string]interface{} { return nil }
func (idOnly) Created() time.Time            { return time.Time{} }
func (idOnly) Accessed() time.Time           { return time.Time{} }
func (idOnly) Mutex() *sync.RWMutex          { return nil }
func (idOnly) Access()                       {}

// Every log call of the package that passes an error passes it through
// redact. Checked on the source, so that a new log line cannot forget it:
// no argument of a logf call may be an error variable.
func TestLogCallsRedactErrors(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "logf" {
				return true
			}
			calls++
			for _, arg := range call.Args {
				if id, ok := arg.(*ast.Ident); ok && (id.Name == "err" || strings.HasSuffix(id.Name, "Err")) {
					t.Errorf("%s: logf passes %s without redact", fset.Position(arg.Pos()), id.Name)
				}
				if c, ok := arg.(*ast.CallExpr); ok {
					if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Error" {
						t.Errorf("%s: logf passes an error's text without redact", fset.Position(arg.Pos()))
					}
				}
			}
			return true
		})
	}
	assert.Greater(t, calls, 20, "the check saw the package's log calls")
}

// A session too large for a Memcache item but not for a Datastore entity.
// Memcache's limit counts the key, the value and 73 bytes of overhead
// within 1 MiB, so with the default short key a session too big for it is
// too big for an entity too; a long KeyPrefix leaves room between the two.
const (
	longPrefixLen = 200
	bigValueLen   = 1048000
)

// withLongPrefix returns a copy of o with a KeyPrefix of longPrefixLen
// bytes.
func withLongPrefix(o *MemcacheStoreOptions) *MemcacheStoreOptions {
	c := MemcacheStoreOptions{}
	if o != nil {
		c = *o
	}
	c.KeyPrefix = strings.Repeat("p", longPrefixLen)
	return &c
}

// Defect 7: a session over Memcache's limit was silently not cached, and
// an older, smaller copy stayed there to be served. Now Memcache holds a
// marker that sends readers to the Datastore, and the log says what
// happened, in every mode.
func TestOversizedSessionKeptInDatastore(t *testing.T) {
	for _, mode := range storeModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			o := withLongPrefix(mode.opts)
			id := e.newSession(o, time.Hour)
			var st session.Store
			e.request(o, func(s session.Store) {
				st = s
				s.Get(id).SetAttr("big", strings.Repeat("x", bigValueLen))
			})
			require.NoError(t, WaitForAsyncSaves(context.Background()))

			if o.OnlyMemcache {
				lines := e.logged("ERROR", LogID(id), "session not saved", "over memcache's item limit (1048576 bytes for key, value and overhead)", "OnlyMemcache")
				assert.Len(t, lines, 1, "logs: %v", e.allLogs())
				assert.Error(t, SaveError(st))
				e.request(o, func(st session.Store) {
					sess := st.Get(id)
					require.NotNil(t, sess, "the previous copy is kept")
					assert.Nil(t, sess.Attr("big"))
				})
				return
			}
			assert.Len(t, e.logged("WARNING", LogID(id), "over memcache's item limit (1048576 bytes for key, value and overhead)", "kept in the datastore only"), 1, "logs: %v", e.allLogs())
			assert.Empty(t, e.logged("ERROR"))
			assert.NoError(t, SaveError(st))
			item, err := memcache.Get(e.ctx(), o.KeyPrefix+id)
			require.NoError(t, err)
			assert.Equal(t, seeDatastoreValue, item.Value, "the stale small copy left memcache")
			e.request(o, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess)
				assert.Len(t, sess.Attr("big"), bigValueLen)
				assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
				sess.SetAttr("big", nil) // small again: back into memcache
			})
			require.NoError(t, WaitForAsyncSaves(context.Background()))
			e.request(o, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess)
				assert.Nil(t, sess.Attr("big"))
				assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
			})
		})
	}
}

// A session too large for the Datastore too is saved nowhere. The log line
// says so (it used to say "kept in the datastore only", and carried the
// Datastore's error text with the ID in it), SaveError reports it, and by
// default the previous copy is still what requests get.
func TestSessionTooLargeForBothTiers(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)
	var st session.Store
	e.request(nil, func(s session.Store) {
		st = s
		s.Get(id).SetAttr("huge", strings.Repeat("x", 1100000))
	})
	lines := e.logged("ERROR", LogID(id), "session not saved", "over memcache's item limit", "datastore failed", "too big")
	assert.Len(t, lines, 1, "logs: %v", e.allLogs())
	assert.Empty(t, e.logged("kept in the datastore"))
	for _, l := range e.allLogs() {
		assert.NotContains(t, l, id)
	}
	err := SaveError(st)
	require.Error(t, err)
	assert.Contains(t, err.Error(), LogID(id))
	assert.NotContains(t, err.Error(), id)
	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Nil(t, sess.Attr("huge"), "the previous state")
		assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
	})
}

// SaveError: nil while everything is saved; the latest failure otherwise,
// for a sync save, an async one (once waited for) and a logout.
func TestSaveError(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)

	e.request(nil, func(st session.Store) {
		st.Get(id).SetAttr("n", 2)
		st.Close()
		assert.NoError(t, SaveError(st))
	})

	e.srv.FailNext("datastore_v3", "Put", faultDown)
	e.request(nil, func(st session.Store) {
		st.Get(id).SetAttr("n", 3)
		st.Close()
		err := SaveError(st)
		require.Error(t, err)
		assert.Equal(t, "gaesession: "+LogID(id)+": saving the session to the datastore: API error 3 (datastore_v3: INTERNAL_ERROR): aelocal: injected failure of datastore_v3.Put", err.Error())
		assert.NotNil(t, errors.Unwrap(err), "the service's error is wrapped")
	})

	o := &MemcacheStoreOptions{AsyncDatastoreSave: true}
	e.request(o, func(st session.Store) {
		st.Get(id).SetAttr("n", 4)
		st.Close()
		require.NoError(t, WaitForAsyncSaves(context.Background()))
		assert.ErrorContains(t, SaveError(st), "saving the session to the datastore")
	})
	e.srv.FailNext("datastore_v3", "Put", 0)

	e.srv.FailNext("datastore_v3", "Delete", faultDown)
	e.request(nil, func(st session.Store) {
		st.Remove(st.Get(id))
		assert.ErrorContains(t, SaveError(st), "removing the session from the datastore")
	})
	e.srv.FailNext("datastore_v3", "Delete", 0)

	other := session.NewInMemStoreOptions(&session.InMemStoreOptions{Logger: session.NoopLogger})
	defer other.Close()
	assert.NoError(t, SaveError(other), "another store has no save errors to report")
}
