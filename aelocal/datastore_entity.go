package aelocal

import (
	"iter"
	"math"
	"slices"
	"strings"
	"unique"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// How a stored entity is held (issue 25, item 4).
//
// An entity is kept as its encoded EntityProto, the bytes the datastore
// file holds, in a string (immutable, so substrings of it are shared, not
// copied), and the indexed values that queries and indexes compare,
// decoded once from those bytes by a reader of the protobuf wire format
// (decodeProps): their strings (string values, keys' kinds and names) are
// substrings of the bytes, and a value (dsValue) is 24 bytes, its
// property's name an offset into them. A decoded EntityProto, a tree of a few
// dozen protobuf messages, cost 4 to 5 KB per entity of ten properties
// when it was kept, and a map of its values 1.5 KB more; an entity of ten
// properties of 503 bytes now takes 880 bytes of live heap, 1.4 KB with
// its index entries (BenchmarkEntityMemory, BENCHMARKS.md). Answers carry the bytes as they are (answer), so a Get
// or a query decodes nothing; a restart reads the file the same way,
// without building messages (persist.go).

// dsEntity is a stored entity. Once stored it is never modified, so it may
// be read without the lock once found.
type dsEntity struct {
	// sp is the entity's app and namespace, interned: the entities of a
	// namespace share one copy, where two strings would take 32 bytes
	// of each (issue 25, item 4). unique drops a value no handle holds,
	// so namespaces whose entities are gone cost nothing.
	sp    unique.Handle[nsKey]
	path  dsPath
	props dsProps // the encoded EntityProto and its indexed values
	ver   uint64  // datastore seq of the write that stored it
}

// space is the entity's app and namespace.
func (e *dsEntity) space() nsKey { return e.sp.Value() }

// encoded is the EntityProto as stored, encoded, key complete.
func (e *dsEntity) encoded() string { return e.props.raw }

// size is the entity's encoded size.
func (e *dsEntity) size() int { return len(e.props.raw) }

// msg returns the entity as a new EntityProto, the caller's to modify.
func (e *dsEntity) msg() pmsg {
	ep, _ := newMsg("appengine.v2.EntityProto")
	e.writeTo(ep)
	return ep
}

// answer returns an EntityProto to put into an answer: a message with no
// fields of its own whose unknown fields are the entity's bytes, which
// encoding the answer copies as they are. Nothing is decoded, so a Get or
// a query's page costs what copying its bytes costs, as when the decoded
// message itself was shared. Only for answers that are encoded as they
// are (the server encodes them without the check of required fields,
// which cannot see into the bytes); code that reads an answer decodes it
// first (consoleCall, inspectCall).
func (e *dsEntity) answer() pmsg {
	ep, _ := newMsg("appengine.v2.EntityProto")
	e.answerInto(ep)
	return ep
}

// answerInto makes dst, an empty EntityProto, what answer returns.
func (e *dsEntity) answerInto(dst pmsg) {
	// A slice of the string's own bytes, whose capacity ends where they
	// do: nothing can write into it (an append reallocates).
	dst.m.SetUnknown(rawBytes(e.encoded()))
}

// writeTo fills dst, an empty EntityProto, with the entity.
func (e *dsEntity) writeTo(dst pmsg) {
	// The bytes were encoded from a message of this type (or read back
	// from the file after a checksum), so they decode.
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(rawBytes(e.encoded()), dst.m.Interface()); err != nil {
		panic("aelocal: a stored entity does not decode: " + err.Error())
	}
}

// keyMsg returns the entity's key as a new Reference.
func (e *dsEntity) keyMsg() pmsg {
	r, _ := newMsg("appengine.v2.Reference")
	if err := proto.Unmarshal(rawBytes(e.field(entityKeyField)), r.m.Interface()); err != nil {
		panic("aelocal: a stored key does not decode: " + err.Error())
	}
	return r
}

// groupMsg returns the entity's entity_group as a new Path.
func (e *dsEntity) groupMsg() pmsg {
	p, _ := newMsg("appengine.v2.Path")
	if err := proto.Unmarshal(rawBytes(e.field(entityGroupField)), p.m.Interface()); err != nil {
		panic("aelocal: a stored entity group does not decode: " + err.Error())
	}
	return p
}

// keySize is the encoded size of the entity's key (a Reference).
func (e *dsEntity) keySize() int { return len(e.field(entityKeyField)) }

// field returns the bytes of the message field num of raw (its last
// occurrence; the stored bytes have one).
func (e *dsEntity) field(num protowire.Number) string {
	raw := e.encoded()
	b := rawBytes(raw)
	var out string
	for len(b) > 0 {
		n, t, m := protowire.ConsumeTag(b)
		if m < 0 {
			break
		}
		at := len(raw) - len(b) + m
		l := protowire.ConsumeFieldValue(n, t, b[m:])
		if l < 0 {
			break
		}
		if n == num && t == protowire.BytesType {
			v, vl := protowire.ConsumeBytes(b[m:])
			if vl > 0 {
				start := at + (vl - len(v))
				out = raw[start : start+len(v)]
			}
		}
		b = b[m+l:]
	}
	return out
}

// rawBytes views s as bytes, without copying, for the protobuf decoders,
// which only read their input. The bytes must never be written.
func rawBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// dsProps are an entity's encoding, raw, and its indexed property values:
// vals[i] is a value of the property name(i), whose name lies in raw where
// the value says (dsValue.nameIn), so a name costs no memory of its own.
// Values are sorted by name, each property's values in the order stored.
// Nothing is modified once built: indexes point into vals.
type dsProps struct {
	raw  string
	vals []dsValue
}

// name is the property name of value i.
func (p dsProps) name(i int) string { return p.vals[i].nameIn(p.raw) }

// get returns the values of property name, nil if it has none.
func (p dsProps) get(name string) []dsValue {
	lo, hi := 0, len(p.vals)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.name(m) < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	hi = lo
	for hi < len(p.vals) && p.name(hi) == name {
		hi++
	}
	if hi == lo {
		return nil
	}
	return p.vals[lo:hi:hi]
}

// all yields each property and its values, by name.
func (p dsProps) all() iter.Seq2[string, []dsValue] {
	return func(yield func(string, []dsValue) bool) {
		for lo := 0; lo < len(p.vals); {
			name := p.name(lo)
			hi := lo + 1
			for hi < len(p.vals) && p.name(hi) == name {
				hi++
			}
			if !yield(name, p.vals[lo:hi:hi]) {
				return
			}
			lo = hi
		}
	}
}

// len is the number of values.
func (p dsProps) len() int { return len(p.vals) }

// Field numbers of the messages decodeProps and decodeEntityKey read
// (datastore_v3.proto of google.golang.org/appengine/v2).
const (
	entityKeyField      = 13 // EntityProto.key, Reference
	entityGroupField    = 16 // EntityProto.entity_group, Path
	entityPropertyField = 14 // EntityProto.property, Property

	refAppField  = 13 // Reference.app
	refNSField   = 20 // Reference.name_space
	refPathField = 14 // Reference.path, Path

	pathElementField = 1 // Path.Element, a group
	elemTypeField    = 2
	elemIDField      = 3
	elemNameField    = 4

	propNameField  = 3 // Property.name
	propValueField = 5 // Property.value, PropertyValue

	pvInt64Field  = 1
	pvBoolField   = 2
	pvStringField = 3
	pvDoubleField = 4
	pvPointField  = 5 // group: x 6, y 7
	pvPointX      = 6
	pvPointY      = 7
	pvUserField   = 8 // group: email 9, auth_domain 10
	pvUserEmail   = 9
	pvUserAuth    = 10
	pvRefField    = 12 // group: app 13, name_space 20, PathElement 14
	pvRefApp      = 13
	pvRefNS       = 20
	pvRefElem     = 14 // group: type 15, id 16, name 17
	pvRefElemType = 15
	pvRefElemID   = 16
	pvRefElemName = 17
)

// wireReader walks the fields of one encoded message held in a string,
// giving string fields as substrings of it. Malformed input sets bad.
type wireReader struct {
	s   string // the whole buffer
	off int    // the next field
	end int    // the message's end
	bad bool
}

// next reads the next field's tag; ok is false at the end or on an error.
func (r *wireReader) next() (num protowire.Number, typ protowire.Type, ok bool) {
	if r.bad || r.off >= r.end {
		return 0, 0, false
	}
	n, t, m := protowire.ConsumeTag(rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return 0, 0, false
	}
	r.off += m
	return n, t, true
}

// varint reads a varint field's value.
func (r *wireReader) varint() uint64 {
	v, m := protowire.ConsumeVarint(rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return 0
	}
	r.off += m
	return v
}

// fixed64 reads a fixed64 field's value.
func (r *wireReader) fixed64() uint64 {
	v, m := protowire.ConsumeFixed64(rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return 0
	}
	r.off += m
	return v
}

// bytes reads a length-delimited field and returns its bounds.
func (r *wireReader) bytes() (lo, hi int) {
	v, m := protowire.ConsumeBytes(rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return r.off, r.off
	}
	hi = r.off + m
	return hi - len(v), hi
}

// str reads a length-delimited field as a substring.
func (r *wireReader) str() string {
	lo, hi := r.bytes()
	r.off = hi
	return r.s[lo:hi]
}

// sub reads a length-delimited field as a message.
func (r *wireReader) sub() wireReader {
	lo, hi := r.bytes()
	r.off = hi
	return wireReader{s: r.s, off: lo, end: hi, bad: r.bad}
}

// group reads the body of group num, whose start tag was just read.
func (r *wireReader) group(num protowire.Number) wireReader {
	v, m := protowire.ConsumeGroup(num, rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return wireReader{bad: true}
	}
	lo := r.off
	r.off += m
	return wireReader{s: r.s, off: lo, end: lo + len(v)}
}

// skip passes over the value of a field of type typ.
func (r *wireReader) skip(num protowire.Number, typ protowire.Type) {
	m := protowire.ConsumeFieldValue(num, typ, rawBytes(r.s[r.off:r.end]))
	if m < 0 {
		r.bad = true
		return
	}
	r.off += m
}

// valueAcc gathers the fields of a PropertyValue; value decides which
// one it is, as parseValue does for a message.
type valueAcc struct {
	has         [pvRefField + 1]bool
	i           int64
	b           bool
	s           string
	f           float64
	x, y        float64
	email, auth string
	app, ns     string
	path        dsPath
}

func (a *valueAcc) read(r wireReader) bool {
	for {
		num, typ, ok := r.next()
		if !ok {
			break
		}
		switch {
		case num == pvInt64Field && typ == protowire.VarintType:
			a.has[num], a.i = true, int64(r.varint())
		case num == pvBoolField && typ == protowire.VarintType:
			a.has[num], a.b = true, r.varint() != 0
		case num == pvStringField && typ == protowire.BytesType:
			a.has[num], a.s = true, r.str()
		case num == pvDoubleField && typ == protowire.Fixed64Type:
			a.has[num], a.f = true, math.Float64frombits(r.fixed64())
		case num == pvPointField && typ == protowire.StartGroupType:
			a.has[num] = true
			g := r.group(num)
			for {
				n, t, ok := g.next()
				if !ok {
					break
				}
				switch {
				case n == pvPointX && t == protowire.Fixed64Type:
					a.x = math.Float64frombits(g.fixed64())
				case n == pvPointY && t == protowire.Fixed64Type:
					a.y = math.Float64frombits(g.fixed64())
				default:
					g.skip(n, t)
				}
			}
			r.bad = r.bad || g.bad
		case num == pvUserField && typ == protowire.StartGroupType:
			a.has[num] = true
			g := r.group(num)
			for {
				n, t, ok := g.next()
				if !ok {
					break
				}
				switch {
				case n == pvUserEmail && t == protowire.BytesType:
					a.email = g.str()
				case n == pvUserAuth && t == protowire.BytesType:
					a.auth = g.str()
				default:
					g.skip(n, t)
				}
			}
			r.bad = r.bad || g.bad
		case num == pvRefField && typ == protowire.StartGroupType:
			a.has[num] = true
			g := r.group(num)
			for {
				n, t, ok := g.next()
				if !ok {
					break
				}
				switch {
				case n == pvRefApp && t == protowire.BytesType:
					a.app = g.str()
				case n == pvRefNS && t == protowire.BytesType:
					a.ns = g.str()
				case n == pvRefElem && t == protowire.StartGroupType:
					a.path = append(a.path, readElem(g.group(n), pvRefElemType, pvRefElemID, pvRefElemName, &g.bad))
				default:
					g.skip(n, t)
				}
			}
			r.bad = r.bad || g.bad
		default:
			r.skip(num, typ)
		}
	}
	return !r.bad
}

// readElem reads a path element group whose fields are numbered kind, id
// and name.
func readElem(g wireReader, kind, id, name protowire.Number, bad *bool) dsElem {
	var el dsElem
	for {
		n, t, ok := g.next()
		if !ok {
			break
		}
		switch {
		case n == kind && t == protowire.BytesType:
			el.kind = g.str()
		case n == id && t == protowire.VarintType:
			el.id = int64(g.varint())
		case n == name && t == protowire.BytesType:
			el.name = g.str()
		default:
			g.skip(n, t)
		}
	}
	if g.bad {
		*bad = true
	}
	return el
}

// value is the dsValue the gathered fields make: the first of them in
// parseValue's order, or null.
func (a *valueAcc) value() dsValue {
	switch {
	case a.has[pvInt64Field]:
		return intValue(a.i)
	case a.has[pvBoolField]:
		return boolValue(a.b)
	case a.has[pvStringField]:
		return stringValue(a.s)
	case a.has[pvDoubleField]:
		return doubleValue(a.f)
	case a.has[pvPointField]:
		return pointValue(a.x, a.y)
	case a.has[pvUserField]:
		return userValue(a.email, a.auth)
	case a.has[pvRefField]:
		path := a.path
		if path == nil {
			path = dsPath{}
		}
		return refValue(&dsRef{app: a.app, ns: a.ns, path: slices.Clip(path)})
	}
	return nullValue()
}

// errMalformed reports bytes that are not a well-formed message.
type errMalformed struct{ what string }

func (e errMalformed) Error() string { return "malformed " + e.what }

// decodeProps reads the indexed property values of raw, an encoded
// EntityProto: the values of its property fields (raw_property ones are
// unindexed), as newEntity indexes them. An indexed string value longer
// than production allows is refused.
func decodeProps(raw string) (dsProps, error) {
	// Count the properties first, so that the values are allocated once,
	// at their size.
	n := 0
	r := wireReader{s: raw, end: len(raw)}
	for {
		num, typ, ok := r.next()
		if !ok {
			break
		}
		if num == entityPropertyField && typ == protowire.BytesType {
			n++
		}
		r.skip(num, typ)
	}
	if r.bad {
		return dsProps{}, errMalformed{"entity"}
	}
	p := dsProps{raw: raw}
	if n == 0 {
		return p, nil
	}
	p.vals = make([]dsValue, 0, n)
	r = wireReader{s: raw, end: len(raw)}
	for {
		num, typ, ok := r.next()
		if !ok {
			break
		}
		if num != entityPropertyField || typ != protowire.BytesType {
			r.skip(num, typ)
			continue
		}
		f := r.sub()
		var name string
		nameAt := 0
		var acc valueAcc
		for {
			n, t, ok := f.next()
			if !ok {
				break
			}
			switch {
			case n == propNameField && t == protowire.BytesType:
				lo, hi := f.bytes()
				f.off = hi
				name, nameAt = raw[lo:hi], lo
			case n == propValueField && t == protowire.BytesType:
				if !acc.read(f.sub()) {
					f.bad = true
				}
			default:
				f.skip(n, t)
			}
		}
		if f.bad {
			return dsProps{}, errMalformed{"entity"}
		}
		v := acc.value()
		if v.typ() == vString && len(v.str()) > maxIndexedStringBytes {
			// The message names the property, not the key: key names
			// can be secrets (session IDs), and the client knows which
			// entity it sent.
			return dsProps{}, badRequest("the indexed value of property %q is %d bytes long; the limit is %d bytes (store long values unindexed, e.g. with the struct tag `datastore:\",noindex\"`)",
				name, len(v.str()), maxIndexedStringBytes)
		}
		if len(name) > maxValueNameBytes || uint64(nameAt) > math.MaxUint32 {
			// Never for an entity this server stored (at most
			// maxEntityBytes), only for one in a file written otherwise.
			return dsProps{}, badRequest("property name of %d bytes at byte %d of an entity: aelocal holds names of at most %d bytes in entities of at most 4 GB", len(name), nameAt, maxValueNameBytes)
		}
		p.vals = append(p.vals, v.named(nameAt, len(name)))
	}
	byName := func(a, b dsValue) int { return strings.Compare(a.nameIn(raw), b.nameIn(raw)) }
	if !slices.IsSortedFunc(p.vals, byName) {
		slices.SortStableFunc(p.vals, byName)
	}
	return p, nil
}

// decodeEntityKey reads the key of raw, an encoded EntityProto: its app and
// namespace, and its path's elements (unchecked).
func decodeEntityKey(raw string) (nsKey, dsPath, error) {
	var sp nsKey
	var path dsPath
	r := wireReader{s: raw, end: len(raw)}
	for {
		num, typ, ok := r.next()
		if !ok {
			break
		}
		if num != entityKeyField || typ != protowire.BytesType {
			r.skip(num, typ)
			continue
		}
		k := r.sub()
		for {
			n, t, ok := k.next()
			if !ok {
				break
			}
			switch {
			case n == refAppField && t == protowire.BytesType:
				sp.app = k.str()
			case n == refNSField && t == protowire.BytesType:
				sp.ns = k.str()
			case n == refPathField && t == protowire.BytesType:
				p := k.sub()
				for {
					n, t, ok := p.next()
					if !ok {
						break
					}
					if n == pathElementField && t == protowire.StartGroupType {
						path = append(path, readElem(p.group(n), elemTypeField, elemIDField, elemNameField, &p.bad))
					} else {
						p.skip(n, t)
					}
				}
				k.bad = k.bad || p.bad
			default:
				k.skip(n, t)
			}
		}
		r.bad = r.bad || k.bad
	}
	if r.bad {
		return sp, nil, errMalformed{"entity"}
	}
	return sp, slices.Clip(path), nil
}

// encodeEntity encodes ep as the datastore stores it: deterministically.
func encodeEntity(ep pmsg) (string, error) {
	b, err := ep.Marshal()
	return string(b), err
}

// newEntity stores ep, an EntityProto whose key is complete (sp, path):
// its encoding and its indexed values.
func newEntity(sp nsKey, path dsPath, ep pmsg) (*dsEntity, error) {
	raw, err := encodeEntity(ep)
	if err != nil {
		return nil, badRequest("cannot encode entity: %v", err)
	}
	return newEntityRaw(sp, path, raw)
}

// newEntityRaw is newEntity for an encoded EntityProto.
func newEntityRaw(sp nsKey, path dsPath, raw string) (*dsEntity, error) {
	props, err := decodeProps(raw)
	if err != nil {
		return nil, err
	}
	return &dsEntity{sp: unique.Make(sp), path: path, props: props}, nil
}

// decodedAnswer returns a copy of out, an answer that may hold stored
// entities as their bytes (dsEntity.answer), with those decoded, for code
// that reads answers in the process.
func decodedAnswer(out pmsg) (pmsg, error) {
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(out.m.Interface())
	if err != nil {
		return pmsg{}, err
	}
	copied := pmsg{out.m.New()}
	if err := proto.Unmarshal(b, copied.m.Interface()); err != nil {
		return pmsg{}, err
	}
	return copied, nil
}
