package aelocal

import (
	"math"
	"unsafe"
)

// dsValue is one indexed property value. Every stored entity holds one per
// indexed value, and the single-property indexes point at them, so a value
// is kept to three words, 24 bytes (issue 25, item 4; it was 40, with the
// property's name in a slice of its own beside the values):
//
//   - p is a pointer: the first byte of a string value (vString), which
//     for a stored entity lies in the entity's encoded bytes, or the
//     *dsRef of a key, point or user value;
//   - n is the integer (vInt; vBool as 0 or 1), a double's bits (vDouble,
//     and a point's x), or the length of the string at p;
//   - nameAt and tn place the name of the property the value belongs to in
//     its entity's encoded bytes (dsProps.name; zero in a value made from
//     a query's filter), and hold the value's type in tn's low byte.
//
// Only the constructors and accessors below read or write the fields.
// unsafe is needed for a string as a pointer and a length in separate
// words; it stays safe for the collector because p is an unsafe.Pointer,
// which the collector traces like any pointer (a pointer into a string's
// bytes keeps the whole string alive, as a substring does), and a string
// is only rebuilt (unsafe.String) from the pointer and length that
// unsafe.StringData and len took from a string. The string's bytes are
// never written: they are a Go string's. A string field and a type byte
// would need 32 bytes; a name offset too, 40.
type dsValue struct {
	// A value is compared with compareValue, never with ==, which would
	// compare p as a pointer and see the name: this makes == a compile
	// error, for no space (a zero-size first field).
	_      [0]func()
	p      unsafe.Pointer
	n      uint64
	nameAt uint32
	tn     uint32 // the name's length << 8 | the type (vNull...)
}

// maxValueNameBytes is the longest property name a value can place (24
// bits of tn); an entity's bytes are at most maxEntityBytes, far less,
// and production's limit on a name is 1,500 bytes.
const maxValueNameBytes = 1<<24 - 1

// dsRef is a key value; for a point or a user value, only y, or email and
// auth, are set.
type dsRef struct {
	app, ns     string
	path        dsPath
	y           float64 // vPoint
	email, auth string  // vUser
}

// nullValue, intValue, boolValue, stringValue, doubleValue, pointValue,
// userValue and refValue make values of those types.
func nullValue() dsValue { return dsValue{tn: vNull} }

func intValue(i int64) dsValue { return dsValue{n: uint64(i), tn: vInt} }

func boolValue(b bool) dsValue {
	v := dsValue{tn: vBool}
	if b {
		v.n = 1
	}
	return v
}

func stringValue(s string) dsValue {
	if len(s) == 0 {
		// No pointer into (or past) anything.
		return dsValue{tn: vString}
	}
	return dsValue{p: unsafe.Pointer(unsafe.StringData(s)), n: uint64(len(s)), tn: vString}
}

func doubleValue(f float64) dsValue {
	return dsValue{n: math.Float64bits(f), tn: vDouble}
}

func pointValue(x, y float64) dsValue {
	return dsValue{p: unsafe.Pointer(&dsRef{y: y}), n: math.Float64bits(x), tn: vPoint}
}

func userValue(email, auth string) dsValue {
	return dsValue{p: unsafe.Pointer(&dsRef{email: email, auth: auth}), tn: vUser}
}

func refValue(r *dsRef) dsValue { return dsValue{p: unsafe.Pointer(r), tn: vRef} }

// typ is the value's type, vNull to vRef.
func (v dsValue) typ() int8 { return int8(v.tn) }

// int is an integer's value (a time's microseconds), or a bool's 0 or 1.
func (v dsValue) int() int64 { return int64(v.n) }

// str is a string's value.
func (v dsValue) str() string { return unsafe.String((*byte)(v.p), int(v.n)) }

// float is a double's value, or a point's x.
func (v dsValue) float() float64 { return math.Float64frombits(v.n) }

// pointY is a point's y.
func (v dsValue) pointY() float64 { return v.ref().y }

// email is a user's email.
func (v dsValue) email() string { return v.ref().email }

// authDomain is a user's auth domain.
func (v dsValue) authDomain() string { return v.ref().auth }

// ref is a key value's key (and holds a point's y, a user's email and
// auth domain).
func (v dsValue) ref() *dsRef { return (*dsRef)(v.p) }

// named returns v placed as the value of the property whose name is
// raw[at:at+n] in its entity's encoded bytes raw.
func (v dsValue) named(at, n int) dsValue {
	v.nameAt, v.tn = uint32(at), uint32(n)<<8|uint32(uint8(v.tn))
	return v
}

// nameIn is the name of the property v belongs to, in raw, the encoded
// bytes of its entity.
func (v dsValue) nameIn(raw string) string {
	at := int(v.nameAt)
	return raw[at : at+int(v.tn>>8)]
}
