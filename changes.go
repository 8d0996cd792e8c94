package gaesession

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/icza/session"
)

// Change detection. A request writes back a session it loaded only if the
// session's attributes changed. The store cannot tell from the codec's
// bytes: they carry the access time, gob writes maps in random order, and a
// custom codec may encode the same session differently every time (with a
// random nonce, say). Decoding the loaded bytes a second time to compare
// would cost as much again as the load itself.
//
// Instead, when a session is loaded (or written by Add), the store takes a
// print of its attributes: a canonical byte description of the values
// themselves, made by walking them with reflection, and compares the
// attributes with it on Close. The print follows pointers, slices, maps
// and interfaces, and reads unexported fields too, so a value changed in
// place anywhere below an attribute changes the print. Maps are printed in
// sorted order, so their order does not matter. Dynamic types are part of
// the print (an int 1 is not an int64 1). The print depends on no codec,
// so it is exact with any Codec, and for a session added in this request
// it describes the values as the app added them, not as they come back
// from a codec round trip (JSON turns ints into float64s, gob drops a
// time's monotonic reading and turns empty slices into nil).
//
// Two prints are equal when the values are deeply equal as
// reflect.DeepEqual sees them, with these exceptions, none of which can
// lose a change: floats are compared by their bits (a NaN equals itself,
// so an unchanged NaN is no change; -0 differs from +0); a *time.Location
// is compared by identity (locations are immutable, and following one
// would print a whole zone table); funcs and channels are compared by
// identity, as map keys are. Cycles are printed as references to the
// enclosing value (for a slice, one with the same array and length). A value whose print would exceed printLimit bytes gets
// no print, and its session is written on Close whether it changed or
// not.

// printLimit bounds a print. Stored sessions are at most about 1 MB; the
// limit is there for values whose print grows far beyond their encoding
// (a shared pointer printed at every place it is reached). A variable for
// the tests.
var printLimit = 16 << 20

var (
	errPrintDiffers = errors.New("print differs")
	errPrintLimit   = errors.New("print too large")
)

var locationType = reflect.TypeOf((*time.Location)(nil))

// printer makes a print (buf), or compares one being made with ref.
type printer struct {
	buf []byte

	compare bool
	ref     []byte
	pos     int // how much of ref matched so far

	path []pathElem // pointers, maps and slices being printed, for cycles
}

// pathElem is a value being printed. A pointer or map is the same value
// as another with its address and type. A slice needs its length too: a
// longer view of the same array shares the data pointer and type, yet
// reaches elements the shorter one does not, so it is no cycle and must be
// printed in full (its own elements then lead back to it, which ends the
// walk: a slice's length is bounded by its capacity).
type pathElem struct {
	ptr uintptr
	typ reflect.Type
	len int // a slice's length; 0 for pointers and maps
}

// printAttrs returns the print of attrs, nil if it cannot be made. size is
// a guess at its length (the encoding's length will do).
func printAttrs(attrs map[string]interface{}, size int) (print []byte) {
	defer func() {
		if recover() != nil {
			print = nil
		}
	}()
	p := printer{buf: make([]byte, 0, max(size, 16+32*len(attrs)))}
	p.attrs(attrs)
	return p.buf
}

// matchesPrint reports whether attrs print exactly as print. It is false
// for a nil print.
func matchesPrint(print []byte, attrs map[string]interface{}) (same bool) {
	if print == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	p := printer{compare: true, ref: print}
	p.attrs(attrs)
	return p.pos == len(print)
}

// A print of attributes is: the number of attributes, then for each
// attribute in the order of its name, the name, the length of its value's
// print (4 bytes) and that print.

func (p *printer) attrs(attrs map[string]interface{}) {
	p.uvarint(uint64(len(attrs)))
	var small [8]string
	keys := small[:0]
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.str(k)
		if p.compare {
			n, ok := p.peekLen()
			if !ok {
				p.differs()
			}
			start := p.pos
			p.iface(attrs[k])
			if p.pos-start != n {
				p.differs()
			}
			continue
		}
		at := len(p.buf)
		p.buf = append(p.buf, 0, 0, 0, 0)
		p.iface(attrs[k])
		binary.LittleEndian.PutUint32(p.buf[at:], uint32(len(p.buf)-at-4))
	}
}

// peekLen reads a value's length in compare mode.
func (p *printer) peekLen() (int, bool) {
	if len(p.ref)-p.pos < 4 {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(p.ref[p.pos:]))
	p.pos += 4
	return n, true
}

// attrPrints splits a print into the prints of its attributes' values.
func attrPrints(print []byte) map[string][]byte {
	n, k := binary.Uvarint(print)
	if k <= 0 {
		return nil
	}
	print = print[k:]
	m := make(map[string][]byte, n)
	for len(print) > 0 {
		l, k := binary.Uvarint(print)
		if k <= 0 || uint64(len(print)-k) < l+4 {
			return nil
		}
		name := string(print[k : k+int(l)])
		print = print[k+int(l):]
		vl := int(binary.LittleEndian.Uint32(print))
		if len(print)-4 < vl {
			return nil
		}
		m[name] = print[4 : 4+vl]
		print = print[4+vl:]
	}
	return m
}

// matchesValuePrint reports whether v prints exactly as print. (It repeats
// matchesPrint's few lines: a helper taking what to print as a func would
// cost an allocation per call, which TestPrintAllocations forbids.)
func matchesValuePrint(print []byte, v interface{}) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	p := printer{compare: true, ref: print}
	p.iface(v)
	return p.pos == len(print)
}

// diffPrint compares attributes with the print of the attributes a session
// was loaded with; ok is false if the print cannot be read.
func diffPrint(print []byte, after map[string]interface{}) (c attrChanges, ok bool) {
	before := attrPrints(print)
	if before == nil {
		return attrChanges{}, false
	}
	c = attrChanges{set: make(map[string]interface{})}
	for k, v := range after {
		if old, ok := before[k]; !ok || !matchesValuePrint(old, v) {
			c.set[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			c.deleted = append(c.deleted, k)
		}
	}
	return c, true
}

func (p *printer) differs() { panic(errPrintDiffers) }

// put adds b to the print, or compares it with the next bytes of ref.
func (p *printer) put(b []byte) {
	if !p.compare {
		p.buf = append(p.buf, b...)
		if len(p.buf) > printLimit {
			panic(errPrintLimit)
		}
		return
	}
	if len(b) > len(p.ref)-p.pos || string(p.ref[p.pos:p.pos+len(b)]) != string(b) {
		p.differs()
	}
	p.pos += len(b)
}

func (p *printer) byte1(b byte) {
	if !p.compare {
		p.buf = append(p.buf, b)
		if len(p.buf) > printLimit {
			panic(errPrintLimit)
		}
		return
	}
	if p.pos >= len(p.ref) || p.ref[p.pos] != b {
		p.differs()
	}
	p.pos++
}

func (p *printer) uvarint(x uint64) {
	var tmp [binary.MaxVarintLen64]byte
	p.put(binary.AppendUvarint(tmp[:0], x))
}

func (p *printer) varint(x int64) {
	var tmp [binary.MaxVarintLen64]byte
	p.put(binary.AppendVarint(tmp[:0], x))
}

func (p *printer) u64(x uint64) {
	var tmp [8]byte
	binary.LittleEndian.PutUint64(tmp[:], x)
	p.put(tmp[:])
}

func (p *printer) str(s string) {
	p.uvarint(uint64(len(s)))
	if !p.compare {
		p.buf = append(p.buf, s...)
		if len(p.buf) > printLimit {
			panic(errPrintLimit)
		}
		return
	}
	if len(s) > len(p.ref)-p.pos || string(p.ref[p.pos:p.pos+len(s)]) != s {
		p.differs()
	}
	p.pos += len(s)
}

// typ prints a dynamic type: its runtime identity, which is all that
// matters within one process.
func (p *printer) typ(t reflect.Type) {
	p.uvarint(uint64(reflect.ValueOf(t).Pointer()))
}

// iface prints an interface value: nil, or its dynamic type and value.
func (p *printer) iface(v interface{}) {
	if v == nil {
		p.byte1(0)
		return
	}
	rv := reflect.ValueOf(v)
	p.byte1(1)
	p.typ(rv.Type())
	p.value(rv, false)
}

// value prints v, whose type the enclosing print has fixed. In key mode
// (map keys, which Go compares with ==) pointers are printed by identity.
func (p *printer) value(v reflect.Value, key bool) {
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			p.byte1(1)
		} else {
			p.byte1(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.varint(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.uvarint(v.Uint())
	case reflect.Float32, reflect.Float64:
		p.u64(math.Float64bits(v.Float()))
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		p.u64(math.Float64bits(real(c)))
		p.u64(math.Float64bits(imag(c)))
	case reflect.String:
		p.str(v.String())
	case reflect.Interface:
		if v.IsNil() {
			p.byte1(0)
			return
		}
		e := v.Elem()
		p.byte1(1)
		p.typ(e.Type())
		p.value(e, key)
	case reflect.Pointer:
		if v.IsNil() {
			p.byte1(0)
			return
		}
		if key || v.Type() == locationType {
			p.byte1(2)
			p.uvarint(uint64(v.Pointer()))
			return
		}
		if p.enter(v) {
			p.byte1(1)
			p.value(v.Elem(), key)
			p.leave()
		}
	case reflect.Array:
		for i, n := 0, v.Len(); i < n; i++ {
			p.value(v.Index(i), key)
		}
	case reflect.Struct:
		for i, n := 0, v.NumField(); i < n; i++ {
			p.value(v.Field(i), key)
		}
	case reflect.Slice:
		if v.IsNil() {
			p.byte1(0)
			return
		}
		n := v.Len()
		p.byte1(1)
		p.uvarint(uint64(n))
		if v.Type().Elem().Kind() == reflect.Uint8 {
			p.put(v.Bytes())
			return
		}
		if n > 0 && p.enter(v) {
			for i := 0; i < n; i++ {
				p.value(v.Index(i), key)
			}
			p.leave()
		}
	case reflect.Map:
		if v.IsNil() {
			p.byte1(0)
			return
		}
		p.byte1(1)
		p.uvarint(uint64(v.Len()))
		if v.Len() > 0 && p.enter(v) {
			p.mapEntries(v)
			p.leave()
		}
	default: // Chan, Func, UnsafePointer: identity
		p.uvarint(uint64(v.Pointer()))
	}
}

// enter marks the start of printing the pointer, map or slice v; false
// (and a reference printed instead) if v is already being printed.
func (p *printer) enter(v reflect.Value) bool {
	el := pathElem{ptr: v.Pointer(), typ: v.Type()}
	if v.Kind() == reflect.Slice {
		el.len = v.Len()
	}
	for i, x := range p.path {
		if x == el {
			p.byte1(3)
			p.uvarint(uint64(i))
			return false
		}
	}
	if len(p.path) >= 10000 {
		panic(errPrintLimit)
	}
	p.path = append(p.path, el)
	return true
}

func (p *printer) leave() { p.path = p.path[:len(p.path)-1] }

// mapEntries prints the entries of a map in the order of their keys'
// prints.
func (p *printer) mapEntries(v reflect.Value) {
	if v.Type() == attrsType && v.CanInterface() {
		p.stringMap(v.Interface().(map[string]interface{}))
		return
	}
	// Each entry's key and value are printed into one scratch print,
	// then copied in order.
	type span struct{ start, keyEnd, end int }
	sub := printer{path: p.path}
	spans := make([]span, 0, v.Len())
	it := v.MapRange()
	for it.Next() {
		start := len(sub.buf)
		sub.value(it.Key(), true)
		keyEnd := len(sub.buf)
		sub.value(it.Value(), false)
		spans = append(spans, span{start, keyEnd, len(sub.buf)})
		if len(p.buf)+len(sub.buf) > printLimit {
			panic(errPrintLimit)
		}
	}
	// Keys print alike only if they are equal, but NaNs are never equal:
	// entries whose keys print alike are ordered by their values.
	slices.SortFunc(spans, func(a, b span) int {
		if c := strings.Compare(string(sub.buf[a.start:a.keyEnd]), string(sub.buf[b.start:b.keyEnd])); c != 0 {
			return c
		}
		return strings.Compare(string(sub.buf[a.keyEnd:a.end]), string(sub.buf[b.keyEnd:b.end]))
	})
	for _, s := range spans {
		p.put(sub.buf[s.start:s.end])
	}
}

var attrsType = reflect.TypeOf(map[string]interface{}(nil))

// stringMap prints a map[string]interface{} without reflection on its
// entries, as the top level does: the common case of JSON-like values.
func (p *printer) stringMap(m map[string]interface{}) {
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.str(k)
		p.iface(m[k])
	}
}

// withAttrs calls f with the attributes of sess, which f must not keep or
// change. For icza/session's own sessions it reads them in place, under the
// session's read lock, rather than through Attrs, which copies them: the
// stored format already ties this package to that type's exported fields
// (see compat_test.go). Other Session implementations go through Attrs.
func withAttrs(sess session.Session, f func(attrs map[string]interface{})) {
	if v := reflect.ValueOf(sess); iczaSession.typ != nil && v.Type() == iczaSession.typ && !v.IsNil() {
		if mu := sess.Mutex(); mu != nil {
			mu.RLock()
			defer mu.RUnlock()
			f(v.Elem().Field(iczaSession.attrs).Interface().(map[string]interface{}))
			return
		}
	}
	f(sess.Attrs())
}

// iczaSession is icza/session's session type and the indexes of its
// attribute fields; typ is nil if the type is not as expected.
var iczaSession = func() (s struct {
	typ           reflect.Type
	attrs, cattrs int
}) {
	t := reflect.TypeOf(session.NewSession())
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return s
	}
	field := func(name string) int {
		f, ok := t.Elem().FieldByName(name)
		if !ok || !f.IsExported() || len(f.Index) != 1 || f.Type != attrsType {
			return -1
		}
		return f.Index[0]
	}
	s.attrs, s.cattrs = field("AttrsF"), field("CAttrsF")
	if s.attrs >= 0 && s.cattrs >= 0 {
		s.typ = t
	}
	return s
}()
