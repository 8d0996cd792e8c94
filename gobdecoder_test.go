package gaesession

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2/memcache"
)

// Kept gob decoders (gobdecoder.go) decode every stored value exactly as a
// fresh decoder does, memcache.Gob.Unmarshal.

// gobShapes are sessions of the shapes whose encodings the tests decode:
// the types gob defines up front differ between them, and "nested"
// defines types inside the value's message (a struct in an interface in
// an interface).
func gobShapes() map[string]session.Session {
	mk := func(attrs map[string]interface{}) session.Session {
		return session.NewSessionOptions(&session.SessOptions{
			CAttrs:  map[string]interface{}{"user": "gopher"},
			Attrs:   attrs,
			Timeout: time.Hour,
		})
	}
	return map[string]session.Session{
		"small":   mk(map[string]interface{}{"n": 1}),
		"empty":   session.NewSession(),
		"scalars": mk(map[string]interface{}{"n": 1, "f": 1.5, "s": "x", "b": []byte{1}, "t": true, "when": time.Now(), "i64": int64(-7)}),
		"structs": mk(map[string]interface{}{"doc": &changeDoc{Name: "x", Tags: []string{"a"}, Refs: map[string]int{"a": 1}}, "big": big.NewInt(1 << 40)}),
		"json":    mk(map[string]interface{}{"m": map[string]interface{}{"a": "b", "c": 1.5, "d": map[string]interface{}{"e": true}}}),
		"named":   mk(map[string]interface{}{"id": gobUserID("u1")}),
		"slice":   mk(map[string]interface{}{"s": []interface{}{"x", 2.0}}),
		"nested":  mk(map[string]interface{}{"s": []interface{}{&changeDoc{Name: "in an interface in an interface"}}}),
		"large":   mk(map[string]interface{}{"blob": strings.Repeat("x", maxReusedValue)}),
	}
}

// gobUserID is a named string, which gob encodes as a string.
type gobUserID string

func init() { gob.Register(gobUserID("")) }

func gobEncode(t testing.TB, sess session.Session) []byte {
	t.Helper()
	b, err := memcache.Gob.Marshal(sess)
	require.NoError(t, err)
	return b
}

// freshGobDecode is memcache.Gob.Unmarshal into a new session; a panic is
// an error, as in the store.
func freshGobDecode(b []byte) (sess session.Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			sess, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	sess = newSession()
	return sess, memcache.Gob.Unmarshal(b, sess)
}

// sameNewSessions makes the sessions values are decoded into alike, for
// the rest of the test: a value need not set every field.
func sameNewSessions(t testing.TB) {
	prev := newSession
	newSession = func() session.Session {
		sess := session.NewSession()
		v := reflect.ValueOf(sess).Elem()
		v.FieldByName("IDF").SetString("")
		epoch := reflect.ValueOf(time.Unix(0, 0))
		v.FieldByName("CreatedF").Set(epoch)
		v.FieldByName("AccessedF").Set(epoch)
		return sess
	}
	t.Cleanup(func() { newSession = prev })
}

func keptGobDecode(b []byte) (sess session.Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			sess, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return gobDecodeSession(b)
}

// sameDecoding requires the kept decoders' result to be the fresh
// decoder's: both errors, or deeply equal sessions.
func sameDecoding(t testing.TB, b []byte, what string) {
	t.Helper()
	sameNewSessions(t)
	want, werr := freshGobDecode(b)
	got, err := keptGobDecode(b)
	if werr != nil || err != nil {
		require.Equal(t, werr != nil, err != nil, "%s: fresh decoder's error %v, kept decoder's %v", what, werr, err)
		return
	}
	require.True(t, reflect.DeepEqual(want, got), "%s:\nfresh %#v\nkept  %#v", what, want, got)
}

func resetGobDecoders(t testing.TB) {
	gobDecoders.reset()
	t.Cleanup(gobDecoders.reset)
}

func TestKeptGobDecodersDecodeAsFresh(t *testing.T) {
	resetGobDecoders(t)
	shapes := gobShapes()
	var names []string
	blobs := map[string][][]byte{}
	for name, sess := range shapes {
		names = append(names, name)
		// Every encoding of a session with several attributes may define
		// its types in another order (gob follows the map's order).
		for i := 0; i < 4; i++ {
			blobs[name] = append(blobs[name], gobEncode(t, sess))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		name := names[r.IntN(len(names))]
		bs := blobs[name]
		sameDecoding(t, bs[r.IntN(len(bs))], name)
	}
}

// Only decoders that read no definition inline, of small values, are
// kept; a kept decoder goes back after each such use.
func TestWhichGobDecodersAreKept(t *testing.T) {
	resetGobDecoders(t)
	shapes := gobShapes()
	// Every shape begins with the same definitions: those of the session
	// struct. The values of the others define their types inline.
	for _, c := range []struct {
		shape string
		kept  int
	}{
		{"small", 1}, {"small", 1}, {"scalars", 1}, {"json", 1}, {"named", 1}, {"empty", 1},
		{"structs", 0}, {"small", 1}, {"slice", 0}, {"nested", 0}, {"large", 0}, {"scalars", 1},
	} {
		_, err := gobDecodeSession(gobEncode(t, shapes[c.shape]))
		require.NoError(t, err)
		assert.Equal(t, c.kept, gobDecoders.n, "after %s", c.shape)
	}
}

// A kept decoder that meets a type definition it has read before fails;
// the value is then decoded afresh, and the decoder is dropped.
func TestKeptGobDecoderMeetingADefinitionAgain(t *testing.T) {
	resetGobDecoders(t)
	b := gobEncode(t, gobShapes()["nested"])
	// Keep, against the rule, a decoder that read the nested definitions.
	pd := &primedDecoder{r: &sliceReader{b: b}}
	pd.dec = gob.NewDecoder(pd.r)
	require.NoError(t, pd.dec.Decode(session.NewSession()))
	gobDecoders.put(b[:gobDefinitionsLen(b)], pd)
	require.Equal(t, 1, gobDecoders.n)

	sameDecoding(t, b, "nested")
	assert.Equal(t, 0, gobDecoders.n, "the failed decoder is dropped")
}

// Corrupt values decode (or fail) as with a fresh decoder, after a kept
// decoder has been made by a good value with the same leading
// definitions.
func TestKeptGobDecodersOnCorruptValues(t *testing.T) {
	shapes := gobShapes()
	prime := gobEncode(t, shapes["scalars"])
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"small", "scalars", "structs", "json", "nested"} {
		good := gobEncode(t, shapes[name])
		n := gobDefinitionsLen(good)
		require.Equal(t, prime[:n], good[:n], "%s begins with the session struct's definitions", name)
		for i := 0; i < 200; i++ {
			resetGobDecoders(t)
			_, err := gobDecodeSession(prime)
			require.NoError(t, err)
			require.Equal(t, 1, gobDecoders.n)

			bad := bytes.Clone(good)
			switch i % 3 {
			case 0: // a byte of the value's message
				bad[n+r.IntN(len(bad)-n)] ^= byte(1 + r.IntN(255))
			case 1: // the value's message cut short
				bad = bad[:n+r.IntN(len(bad)-n)]
			case 2: // bytes appended
				bad = append(bad, byte(r.IntN(256)), byte(r.IntN(256)))
			}
			sameDecoding(t, bad, fmt.Sprintf("%s, corruption %d", name, i))
		}
	}
}

// Arbitrary bytes decode (or fail) with a kept decoder, made by a good
// value, exactly as with a fresh one.
func FuzzKeptGobDecoder(f *testing.F) {
	for _, sess := range gobShapes() {
		f.Add(gobEncode(f, sess))
	}
	good := gobEncode(f, gobShapes()["scalars"])
	f.Fuzz(func(t *testing.T, b []byte) {
		gobDecoders.reset()
		defer gobDecoders.reset()
		if _, err := gobDecodeSession(good); err != nil {
			t.Fatal(err)
		}
		// The kept decoder is used if b begins with good's definitions.
		if n := gobDefinitionsLen(good); len(b) > n && len(b)%2 == 0 {
			b = append(good[:n:n], b[n:]...)
		}
		sameDecoding(t, b, "fuzzed value")
	})
}

func TestGobDefinitionsLen(t *testing.T) {
	b := gobEncode(t, gobShapes()["small"])
	n := gobDefinitionsLen(b)
	require.Greater(t, n, 0)
	require.Less(t, n, len(b))
	// What follows is one message: its length, then a positive type id.
	size, k := gobUint(b[n:])
	assert.Equal(t, uint64(len(b)-n-k), size)
	id, _ := gobUint(b[n+k:])
	assert.Zero(t, id&1, "a value's type id is not negative")

	for _, bad := range [][]byte{nil, {0}, {5, 1}, {0xff}, {0x81}, b[:n], {0xf7, 1, 2}} {
		assert.Zero(t, gobDefinitionsLen(bad), "%x", bad)
	}
	for _, c := range []struct {
		in []byte
		x  uint64
		k  int
	}{{[]byte{0x7f}, 127, 1}, {[]byte{0xff, 0x80}, 128, 2}, {[]byte{0xfe, 0x01, 0x00}, 256, 3}, {[]byte{0xfe, 0x01}, 0, 0}} {
		x, k := gobUint(c.in)
		assert.Equal(t, c.x, x, "%x", c.in)
		assert.Equal(t, c.k, k, "%x", c.in)
	}
}

// A kept decoder decodes a small session with at most a fifth of a fresh
// one's allocations (26 against 224 with Go 1.26).
func TestKeptGobDecoderAllocations(t *testing.T) {
	resetGobDecoders(t)
	b := gobEncode(t, gobShapes()["small"])
	fresh := testing.AllocsPerRun(50, func() {
		if _, err := freshGobDecode(b); err != nil {
			t.Fatal(err)
		}
	})
	kept := testing.AllocsPerRun(50, func() {
		if _, err := gobDecodeSession(b); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations: fresh %v, kept %v", fresh, kept)
	assert.LessOrEqual(t, kept*5, fresh)
}

func TestIsGob(t *testing.T) {
	assert.True(t, isGob(memcache.Gob))
	assert.False(t, isGob(memcache.JSON))
	assert.False(t, isGob(saltedCodec))
	assert.False(t, isGob(memcache.Codec{}))
}
