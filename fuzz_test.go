package gaesession

import (
	"bytes"
	"encoding/base64"
	"encoding/gob"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icza/session"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// Run a fuzzer with, for example:
//
//	go test -run '^$' -fuzz FuzzGetID -fuzztime 3m .
//	go test -run '^$' -fuzz FuzzStoredValue -fuzztime 3m .
//
// Without -fuzz, go test runs the seeds below and those in
// testdata/fuzz/FuzzGetID and testdata/fuzz/FuzzStoredValue.

// fuzzResetLogs forgets the log lines captured so far.
func fuzzResetLogs(e *testEnv) {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	e.logs.lines = nil
}

// Get with an arbitrary ID (a cookie value, for all the store knows):
// no panic; an ID that ValidID rejects is a miss that costs no RPC; an
// ID that passes is looked up with exactly one Memcache get and one
// Datastore get, and is unknown here, so nil. Nothing is logged for a miss.
// ValidID is also checked against its definition: what
// base64.URLEncoding decodes, 8 to 256 characters long.
func FuzzGetID(f *testing.F) {
	for _, id := range []string{
		"", "short", goldenID, "ZnV6ei1zZXNzaW9uLWlkLTE2",
		"AAAAAAAA", "AAAAAA==", "AAAAAAA=", "AAAAA===", "AAAA====", "AAAAAAB=",
		strings.Repeat("A", 252), strings.Repeat("A", 256), strings.Repeat("A", 260),
		"AAAAAAAAAAAAAAAAAAAA/+==", "AAAAAAAAAAAAAAAAAAAA-_==", "AAAAAAAAAAAAAAAAAAAA=AAA",
		"AAAA\nAAA", "AAAAAAAA\r\n\r\n", "AAAAAAAAAAAAAAAAAAAAAAA\x00", "ÁAAAAAAAAAAAAAAAAAAAAAA",
		"sess#0123abcd", "../../etc/passwd", "AAAA AAAA AAAA", "\"AAAAAAAA\"",
	} {
		f.Add(id)
	}
	e := newTestEnv(f)
	e.captureLogs()
	ctx := e.ctx()
	f.Fuzz(func(t *testing.T, id string) {
		e.srv.ResetStats()
		fuzzResetLogs(e)

		st := NewMemcacheStore(ctx)
		sess := st.Get(id)
		st.Close()
		stats := e.srv.Stats()

		valid := ValidID(id)
		if sess != nil {
			t.Fatalf("Get(%q) found a session; none is stored", id)
		}
		if !valid && len(stats) != 0 {
			t.Fatalf("Get(%q), an invalid ID, made RPCs: %v", id, stats)
		}
		if valid && (len(stats) != 2 || stats["memcache.Get"] != 1 || stats["datastore_v3.Get"] != 1) {
			t.Fatalf("Get(%q) and Close: want one memcache get and one datastore get, got %v", id, stats)
		}
		if logs := e.allLogs(); len(logs) != 0 {
			t.Fatalf("Get(%q), a miss, logged %q", id, logs)
		}

		_, err := base64.URLEncoding.DecodeString(id)
		canonical := err == nil && !strings.ContainsAny(id, "\r\n") && len(id) >= minIDLength && len(id) <= maxIDLength
		if valid != canonical {
			t.Fatalf("ValidID(%q) = %v; base64 decodes it: %v (%v)", id, valid, err == nil, err)
		}
	})
}

// fuzzID is the valid session ID under which FuzzStoredValue stores its
// values.
const fuzzID = "ZnV6ei1zZXNzaW9uLWlkLTE2"

// fuzzSeedValues returns stored values worth starting from: real
// encodings of sessions with fuzzID and with another ID, in both codecs.
func fuzzSeedValues(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	s := goldenSession()
	s.IDF = fuzzID
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&s); err != nil {
		f.Fatal(err)
	}
	out = append(out, buf.Bytes())

	sess := session.NewSessionOptions(&session.SessOptions{
		CAttrs:  map[string]interface{}{"user": "gopher"},
		Attrs:   map[string]interface{}{"n": 1, "f": 1.5, "s": "x", "b": []byte{1}, "t": true},
		Timeout: time.Hour,
	})
	for _, c := range []memcache.Codec{memcache.Gob, memcache.JSON} {
		b, err := c.Marshal(sess)
		if err != nil {
			f.Fatal(err)
		}
		// The same encoding under fuzzID: only the ID's bytes differ.
		b = bytes.ReplaceAll(b, []byte(sess.ID()), []byte(fuzzID))
		out = append(out, b)
	}
	s.IDF = goldenID
	buf.Reset()
	gob.NewEncoder(&buf).Encode(&s)
	out = append(out, buf.Bytes())
	js, _ := json.Marshal(s)
	out = append(out, js, []byte{}, []byte("\x07garbage"), []byte{0xff, 0x00}, []byte("null"), []byte("{}"),
		[]byte(`{"IDF":"`+fuzzID+`"}`), []byte(`{"IDF":"`+fuzzID+`","TimeoutF":-1}`),
		[]byte(`{"IDF":"`+fuzzID+`","TimeoutF":9223372036854775807}`),
		tombstoneValue, seeDatastoreValue)
	return out
}

// Arbitrary bytes as the Memcache value and as the Datastore "val" of a
// session with a valid ID (bit 0 of where: in Memcache, with the given
// flags, which the store reads as the expiry; bit 1: in the Datastore;
// bit 2: the store uses the JSON codec instead of gob). A request gets the
// session, changes it if found, and a second request gets it again: each
// Get returns nil or a session with that ID, nothing panics, and no log
// line contains the ID.
func FuzzStoredValue(f *testing.F) {
	for _, v := range fuzzSeedValues(f) {
		for where := uint8(1); where < 8; where++ {
			f.Add(v, where, uint32(0))
		}
		f.Add(v, uint8(1), uint32(1))          // expired long ago
		f.Add(v, uint8(3), uint32(4102444800)) // 2100
	}
	e := newTestEnv(f)
	e.captureLogs()
	ctx := e.ctx()
	key := datastore.NewKey(ctx, "sess_", fuzzID, 0, nil)
	f.Fuzz(func(t *testing.T, val []byte, where uint8, flags uint32) {
		if err := memcache.Delete(ctx, fuzzID); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			t.Fatal(err)
		}
		if err := datastore.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if where&1 != 0 {
			if err := memcache.Set(ctx, &memcache.Item{Key: fuzzID, Value: val, Flags: flags, Expiration: time.Hour}); err != nil {
				t.Skipf("memcache refuses the value: %v", err)
			}
		}
		if where&2 != 0 {
			if _, err := datastore.Put(ctx, key, &SessEntity{Expires: time.Now().Add(time.Hour), Value: val}); err != nil {
				t.Skipf("datastore refuses the value: %v", err)
			}
		}
		o := &MemcacheStoreOptions{}
		if where&4 != 0 {
			o.Codec = &memcache.JSON
		}
		fuzzResetLogs(e)

		found := false
		for i := 0; i < 2; i++ {
			st := NewMemcacheStoreOptions(ctx, o)
			sess := st.Get(fuzzID)
			if sess != nil {
				found = true
				if sess.ID() != fuzzID {
					t.Fatalf("request %d: Get(%q) returned session %q", i, fuzzID, sess.ID())
				}
				sess.Attrs()
				sess.SetAttr("fuzz", i)
			}
			st.Close()
		}
		if where&3 == 0 && found {
			t.Fatal("nothing was stored, yet a session was found")
		}
		for _, l := range e.allLogs() {
			if strings.Contains(l, fuzzID) {
				t.Fatalf("log line contains the session ID: %q", l)
			}
		}
	})
}
