package aelocal

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// parsePropsFromMsg is how entities' values were read before they were
// kept encoded: from the decoded EntityProto, with parseValue. The wire
// reader (decodeProps) must agree with it on every entity.
func parsePropsFromMsg(ep pmsg) map[string][]dsValue {
	props := make(map[string][]dsValue)
	for _, p := range ep.Msgs("property") {
		props[p.Str("name")] = append(props[p.Str("name")], parseValue(p.Msg("value")))
	}
	return props
}

// randomEntity builds an EntityProto of every kind of value, including
// values with several fields set (parseValue takes the first in its
// order), empty values, unindexed ones and repeated names.
func randomEntity(r *rand.Rand) pmsg {
	ep, _ := newMsg("appengine.v2.EntityProto")
	path := dsPath{{kind: "Parent", name: "p" + strconv.Itoa(r.IntN(5))}, {kind: "K", id: r.Int64N(1000) - 500}}
	if r.IntN(3) == 0 {
		path = path[1:]
		path[0].id = 0
		path[0].name = "n" + strconv.Itoa(r.IntN(100))
	}
	ns := ""
	if r.IntN(2) == 0 {
		ns = "ns" + strconv.Itoa(r.IntN(3))
	}
	writeRef(ep.Mutable("key"), "app", ns, path)
	ep.Mutable("entity_group").AppendMsg("element").Set("type", path[0].kind)
	for range r.IntN(12) {
		field := "property"
		if r.IntN(5) == 0 {
			field = "raw_property"
		}
		p := ep.AppendMsg(field)
		p.Set("name", "p"+strconv.Itoa(r.IntN(6)))
		p.Set("multiple", r.IntN(2) == 0)
		v := p.Mutable("value")
		for range r.IntN(3) {
			switch r.IntN(8) {
			case 0:
				v.Set("int64Value", r.Int64N(1<<40)-(1<<39))
			case 1:
				v.Set("booleanValue", r.IntN(2) == 0)
			case 2:
				v.Set("stringValue", "s"+strconv.Itoa(r.IntN(1000)))
			case 3:
				v.Set("doubleValue", []float64{0, math.Copysign(0, -1), 1.5, math.Inf(-1), math.NaN()}[r.IntN(5)])
			case 4:
				pv := v.Mutable("pointvalue")
				pv.Set("x", r.Float64())
				pv.Set("y", -r.Float64())
			case 5:
				u := v.Mutable("uservalue")
				u.Set("email", "u"+strconv.Itoa(r.IntN(9))+"@example.com")
				u.Set("auth_domain", "gmail.com")
			case 6:
				rv := v.Mutable("referencevalue")
				rv.Set("app", "app")
				if r.IntN(2) == 0 {
					rv.Set("name_space", "x")
				}
				for i := range r.IntN(3) {
					pe := rv.AppendMsg("pathelement")
					pe.Set("type", "R"+strconv.Itoa(i))
					if r.IntN(2) == 0 {
						pe.Set("id", r.Int64N(50))
					} else {
						pe.Set("name", "r")
					}
				}
			}
		}
	}
	return ep
}

// TestDecodePropsMatchesParseValue pins that the wire reader gives every
// entity the values, and every key the path, that the decoded messages
// gave.
func TestDecodePropsMatchesParseValue(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 4))
	for i := range 3000 {
		ep := randomEntity(r)
		raw, err := encodeEntity(ep)
		if err != nil {
			t.Fatal(err)
		}
		props, err := decodeProps(raw)
		if err != nil {
			t.Fatalf("entity %d: %v", i, err)
		}
		got := make(map[string][]dsValue)
		for name, vals := range props.all() {
			if _, dup := got[name]; dup {
				t.Fatalf("entity %d: property %q yielded twice", i, name)
			}
			got[name] = vals
			if gv := props.get(name); len(gv) != len(vals) || len(gv) > 0 && &gv[0] != &vals[0] {
				t.Fatalf("entity %d: get(%q) differs from all()", i, name)
			}
		}
		want := parsePropsFromMsg(ep)
		if len(got) != len(want) {
			t.Fatalf("entity %d: %d properties, want %d", i, len(got), len(want))
		}
		for name, w := range want {
			g := got[name]
			if len(g) != len(w) {
				t.Fatalf("entity %d: %q has %d values, want %d", i, name, len(g), len(w))
			}
			for j := range w {
				if !sameValue(g[j], w[j]) {
					t.Fatalf("entity %d: %q value %d = %s, want %s", i, name, j, showValue(g[j]), showValue(w[j]))
				}
			}
		}
		if props.get("absent") != nil {
			t.Fatalf("entity %d: a property it lacks has values", i)
		}
		wsp, wpath, werr := parseKey(ep.Msg("key"), "entity key", false)
		sp, path, err := decodeEntityKey(raw)
		if err == nil {
			sp, path, err = checkKey(sp, path, "entity key", false)
		}
		if (err == nil) != (werr == nil) || sp != wsp || comparePath(path, wpath) != 0 {
			t.Fatalf("entity %d: key %v %v %v, want %v %v %v", i, sp, path, err, wsp, wpath, werr)
		}
		e := &dsEntity{props: dsProps{raw: raw}}
		if k, _ := ep.Msg("key").Marshal(); string(k) != e.field(entityKeyField) || e.keySize() != len(k) {
			t.Fatalf("entity %d: the key's bytes differ", i)
		}
		if m, _ := e.msg().Marshal(); string(m) != raw {
			t.Fatalf("entity %d: the entity does not decode to its bytes", i)
		}
	}
}

// TestDecodePropsRefusesMalformed pins that bytes that are not an
// EntityProto are refused, whatever their damage, and never panic.
func TestDecodePropsRefusesMalformed(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 5))
	for range 3000 {
		raw, _ := encodeEntity(randomEntity(r))
		b := []byte(raw)
		if len(b) == 0 {
			continue
		}
		switch r.IntN(3) {
		case 0:
			b = b[:r.IntN(len(b))]
		case 1:
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		case 2:
			b[r.IntN(len(b))] = 0xff
		}
		decodeProps(string(b))
		decodeEntityKey(string(b))
	}
	if _, err := decodeProps("\x72\x05ab"); err == nil {
		t.Fatal("a property cut short was accepted")
	}
}

// showValue writes v for a test's message.
func showValue(v dsValue) string {
	switch v.typ() {
	case vInt, vBool:
		return fmt.Sprintf("%d:%d", v.typ(), v.int())
	case vString:
		return fmt.Sprintf("%d:%q", v.typ(), v.str())
	case vDouble:
		return fmt.Sprintf("%d:%v", v.typ(), v.float())
	case vPoint:
		return fmt.Sprintf("%d:(%v, %v)", v.typ(), v.float(), v.pointY())
	case vUser:
		return fmt.Sprintf("%d:%q/%q", v.typ(), v.email(), v.authDomain())
	case vRef:
		return fmt.Sprintf("%d:%q/%q/%v", v.typ(), v.ref().app, v.ref().ns, v.ref().path)
	}
	return fmt.Sprintf("%d", v.typ())
}

// sameValue reports whether two values are the same: of one type, and
// equal in compareValue's order, which compares every part of a value
// (a double, a point's x and y, by their bits, NaN included: floatIndexKey
// is one to one).
func sameValue(a, b dsValue) bool {
	return a.typ() == b.typ() && compareValue(a, b) == 0
}
