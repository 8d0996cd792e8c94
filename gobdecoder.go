package gaesession

import (
	"bytes"
	"encoding"
	"encoding/gob"
	"io"
	"reflect"
	"sync"
	"time"

	"github.com/icza/session"
	"google.golang.org/appengine/v2/memcache"
)

// Decoding with the default codec, memcache.Gob. A stored session is a
// complete gob stream: first the definitions of the types of the session
// struct (the struct, time.Time, map[string]interface{}), then the value's
// message, which defines inline the types of the attribute values gob has
// not defined yet (a struct, a slice other than []byte, another map). A
// fresh gob.Decoder spends most of its work (about 200 of the 225
// allocations of a small session) reading the definitions and compiling a
// decoding engine for each type; the value itself is cheap. Within one
// process, gob numbers types the same way every time, so the definitions
// that begin a stored session are usually byte for byte those of the last
// one.
//
// A decoder that has read a stream keeps its definitions and engines. The
// store keeps such decoders, keyed by the exact bytes of the definitions
// they began with, and decodes a stored value that begins with the same
// bytes by handing a kept decoder only the rest, the value's message.
//
// For any stream the gob encoder made, that gives exactly what a fresh
// decoder gives. The decoder knows the leading definitions (the same
// bytes). A stream defines every type before it uses it, so any other type
// the message uses is defined in the message itself: a decoder that had
// read that definition before would reject it as a duplicate and fail,
// and the store then decodes the value again with a fresh decoder, whose
// result (or error) stands. The decoder's other state is per message: gob
// resets it at each Decode. For bytes the encoder did not make (a corrupt
// or forged value), a kept decoder could accept what a fresh one rejects
// only if an earlier forged value had planted definitions in it; either
// way such bytes could have been written as a valid session by whoever
// can write Memcache or the Datastore.
//
// So that kept decoders do not fail on their next value, the store keeps
// only decoders that read no inline definition: those of sessions whose
// attribute values are all of gob's basic types, []byte, time.Time, or
// map[string]interface{} holding such values (see readsNoDefinitions).
// Other sessions still decode with a kept decoder when one is at hand, but
// it is dropped after use. Decoders of large values (a decoder keeps the
// last message it read) and decoders that failed are not kept either. At
// most maxIdleDecoders are kept.

// maxIdleDecoders bounds the decoders kept; each holds its types' engines,
// about 8 KB for a small session.
const maxIdleDecoders = 32

// maxReusedValue is the largest stored value whose decoder is kept: a
// decoder keeps the last message it read.
const maxReusedValue = 64 << 10

// gobDecoders are the decoders the store keeps, by the definitions they
// read.
var gobDecoders = decoderCache{idle: make(map[string]*[]*primedDecoder)}

type decoderCache struct {
	mu   sync.Mutex
	idle map[string]*[]*primedDecoder // a pointer, so that taking one stores no key
	n    int                          // decoders in idle
}

// primedDecoder is a gob decoder and the reader it reads from, whose
// bytes the store sets before each Decode.
type primedDecoder struct {
	dec *gob.Decoder
	r   *sliceReader
}

// newSession makes the session a stored value is decoded into; tests make
// it deterministic.
var newSession = session.NewSession

// isGob tells whether codec is memcache.Gob.
func isGob(codec memcache.Codec) bool {
	return codec.Unmarshal != nil && reflect.ValueOf(codec.Unmarshal).Pointer() == reflect.ValueOf(memcache.Gob.Unmarshal).Pointer()
}

// gobDecodeSession decodes a stored session as memcache.Gob.Unmarshal does.
func gobDecodeSession(b []byte) (session.Session, error) {
	n := gobDefinitionsLen(b)
	if n == 0 {
		sess := newSession()
		return sess, gob.NewDecoder(bytes.NewReader(b)).Decode(sess)
	}
	defs := b[:n]
	if pd := gobDecoders.take(defs); pd != nil {
		sess := newSession()
		pd.r.b = b[n:]
		err := pd.dec.Decode(sess)
		pd.r.b = nil
		if err == nil {
			if reusable(sess, len(b)) {
				gobDecoders.put(defs, pd)
			}
			return sess, nil
		}
		// A duplicate definition, most likely: decode afresh.
	}
	sess := newSession()
	pd := &primedDecoder{r: &sliceReader{b: b}}
	pd.dec = gob.NewDecoder(pd.r)
	if err := pd.dec.Decode(sess); err != nil {
		return sess, err
	}
	pd.r.b = nil
	if reusable(sess, len(b)) {
		gobDecoders.put(defs, pd)
	}
	return sess, nil
}

// take returns a kept decoder that read defs, nil if there is none.
func (c *decoderCache) take(defs []byte) *primedDecoder {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.idle[string(defs)]
	if list == nil || len(*list) == 0 {
		return nil
	}
	l := *list
	pd := l[len(l)-1]
	l[len(l)-1] = nil
	*list = l[:len(l)-1]
	c.n--
	return pd
}

// put keeps a decoder that read defs, if there is room.
func (c *decoderCache) put(defs []byte, pd *primedDecoder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= maxIdleDecoders {
		return
	}
	list := c.idle[string(defs)]
	if list == nil {
		if len(c.idle) >= maxIdleDecoders {
			// Make room among the prefixes: one with no idle decoder
			// goes.
			for k, l := range c.idle {
				if len(*l) == 0 {
					delete(c.idle, k)
					break
				}
			}
			if len(c.idle) >= maxIdleDecoders {
				return
			}
		}
		list = new([]*primedDecoder)
		c.idle[string(defs)] = list
	}
	*list = append(*list, pd)
	c.n++
}

// reset forgets every kept decoder (tests).
func (c *decoderCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = make(map[string]*[]*primedDecoder)
	c.n = 0
}

// gobDefinitionsLen returns the length of the type definitions that begin
// a gob stream: the messages before the first value message. It returns 0
// if there are none, or if b is not a well-framed stream.
func gobDefinitionsLen(b []byte) int {
	off := 0
	for off < len(b) {
		size, k := gobUint(b[off:])
		if k == 0 || size == 0 || size > uint64(len(b)-off-k) {
			return 0
		}
		msg := b[off+k : off+k+int(size)]
		id, n := gobUint(msg)
		if n == 0 {
			return 0
		}
		if id&1 == 0 {
			// A type id of zero or more: a value's message.
			return off
		}
		off += k + int(size)
	}
	return 0
}

// gobUint reads an unsigned integer as gob encodes it: one byte below
// 128, otherwise a byte holding minus the number of bytes that follow,
// big-endian. k is the number of bytes read, 0 if b does not hold one.
// A type id is a signed integer: its lowest bit is the sign.
func gobUint(b []byte) (x uint64, k int) {
	if len(b) == 0 {
		return 0, 0
	}
	c := b[0]
	if c < 0x80 {
		return uint64(c), 1
	}
	n := -int(int8(c))
	if n < 1 || n > 8 || len(b) < 1+n {
		return 0, 0
	}
	for _, d := range b[1 : 1+n] {
		x = x<<8 | uint64(d)
	}
	return x, 1 + n
}

// reusable tells whether the decoder of sess, a session of size bytes it
// just decoded, is worth keeping: the value was small, and the decoder
// read no type definition from the value's message.
func reusable(sess session.Session, size int) bool {
	if size > maxReusedValue || iczaSession.typ == nil {
		return false
	}
	v := reflect.ValueOf(sess)
	if v.Type() != iczaSession.typ || v.IsNil() {
		return false
	}
	m, _ := v.Elem().Field(iczaSession.attrs).Interface().(map[string]interface{})
	c, _ := v.Elem().Field(iczaSession.cattrs).Interface().(map[string]interface{})
	return readsNoDefinitions(m, 0) && readsNoDefinitions(c, 0)
}

// readsNoDefinitions tells whether gob decoded the values of m, attributes
// of a session, without reading a type definition: gob's basic types need
// none, and time.Time and map[string]interface{} are defined with the
// session struct, ahead of the value. A type of another package that
// encodes itself (a GobEncoder, say) is defined like a struct.
func readsNoDefinitions(m map[string]interface{}, depth int) bool {
	if depth > 16 {
		return false
	}
	for _, v := range m {
		switch v := v.(type) {
		case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr,
			float32, float64, complex64, complex128, string, []byte, time.Time:
		case map[string]interface{}:
			if !readsNoDefinitions(v, depth+1) {
				return false
			}
		default:
			if !basicGobType(reflect.TypeOf(v)) {
				return false
			}
		}
	}
	return true
}

// basicGobType tells whether gob encodes values of t without a type
// definition: a named type of a basic kind (or []byte) that does not
// encode itself.
func basicGobType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 {
			return false
		}
	default:
		return false
	}
	pt := reflect.PointerTo(t)
	for _, m := range selfEncoders {
		if t.Implements(m) || pt.Implements(m) {
			return false
		}
	}
	return true
}

// selfEncoders are the interfaces by which gob lets a type encode itself.
var selfEncoders = []reflect.Type{
	reflect.TypeOf((*gob.GobEncoder)(nil)).Elem(),
	reflect.TypeOf((*encoding.BinaryMarshaler)(nil)).Elem(),
	reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem(),
}

// sliceReader reads b; it is an io.ByteReader, so gob reads from it
// without a buffer of its own, which would read past a message.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *sliceReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}
