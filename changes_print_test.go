package gaesession

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The print of attributes (changes.go), on its own: equal for deeply equal
// values, whatever their addresses and map orders; different as soon as
// any value below an attribute differs.

// printGen generates attributes from a seed. With perturb > 0, the
// perturb-th leaf it generates differs from what the seed alone gives,
// and everything else is the same.
type printGen struct {
	r       *rand.Rand
	leaf    int
	perturb int
}

func genAttrs(seed uint64, perturb int) (attrs map[string]interface{}, leaves int) {
	g := &printGen{r: rand.New(rand.NewPCG(seed, 1)), perturb: perturb}
	attrs = make(map[string]interface{})
	for i, n := 0, 1+g.r.IntN(5); i < n; i++ {
		attrs[fmt.Sprintf("a%d", i)] = g.value(0)
	}
	return attrs, g.leaf
}

// hit counts a leaf and tells whether to perturb it.
func (g *printGen) hit() bool {
	g.leaf++
	return g.leaf == g.perturb
}

// printPoint is a comparable struct, for map keys.
type printPoint struct{ X, Y int }

// printOpaque has unexported fields only.
type printOpaque struct {
	n    int
	tags []string
}

func (g *printGen) value(depth int) interface{} {
	k := g.r.IntN(16)
	if depth >= 3 {
		k %= 7
	}
	switch k {
	case 0:
		v := g.r.IntN(100)
		if g.hit() {
			v++
		}
		return v
	case 1:
		v := int64(g.r.IntN(100))
		if g.hit() {
			v++
		}
		return v
	case 2:
		s := fmt.Sprint(g.r.IntN(100))
		if g.hit() {
			s += "x"
		}
		return s
	case 3:
		b := g.r.IntN(2) == 0
		if g.hit() {
			b = !b
		}
		return b
	case 4:
		f := g.r.Float64()
		if g.hit() {
			f++
		}
		return f
	case 5:
		t := time.Unix(int64(g.r.IntN(1e9)), int64(g.r.IntN(1e9)))
		if g.hit() {
			t = t.Add(time.Nanosecond)
		}
		return t
	case 6:
		b := []byte(fmt.Sprint(g.r.IntN(1000)))
		if g.hit() {
			b[0]++
		}
		return b
	case 7:
		s := make([]interface{}, g.r.IntN(4))
		for i := range s {
			s[i] = g.value(depth + 1)
		}
		return s
	case 8:
		m := make(map[string]interface{})
		for i, n := 0, g.r.IntN(12); i < n; i++ {
			m[fmt.Sprintf("k%d", i)] = g.value(depth + 1)
		}
		return m
	case 9:
		d := &changeDoc{Name: fmt.Sprint(g.r.IntN(10)), Tags: []string{}, Refs: map[string]int{}}
		if g.hit() {
			d.Name += "x"
		}
		for i, n := 0, g.r.IntN(3); i < n; i++ {
			tag := fmt.Sprint(g.r.IntN(10))
			if g.hit() {
				tag += "x"
			}
			d.Tags = append(d.Tags, tag)
		}
		for i, n := 0, g.r.IntN(10); i < n; i++ {
			v := g.r.IntN(10)
			if g.hit() {
				v++
			}
			d.Refs[fmt.Sprint(i)] = v
		}
		return d
	case 10:
		v := big.NewInt(int64(g.r.IntN(1 << 30)))
		if g.hit() {
			v.Add(v, big.NewInt(1))
		}
		return v
	case 11:
		m := make(map[printPoint]string)
		for i, n := 0, g.r.IntN(10); i < n; i++ {
			s := fmt.Sprint(g.r.IntN(10))
			if g.hit() {
				s += "x"
			}
			m[printPoint{i, g.r.IntN(3)}] = s
		}
		return m
	case 12:
		m := make(map[interface{}]interface{})
		for i, n := 0, g.r.IntN(10); i < n; i++ {
			var key interface{} = i
			if g.r.IntN(2) == 0 {
				key = fmt.Sprint(i)
			}
			m[key] = g.value(depth + 1)
		}
		return m
	case 13:
		o := printOpaque{n: g.r.IntN(10), tags: []string{fmt.Sprint(g.r.IntN(10))}}
		if g.hit() {
			o.tags[0] += "x"
		}
		return o
	case 14:
		a := [3]int{g.r.IntN(10), g.r.IntN(10), g.r.IntN(10)}
		if g.hit() {
			a[2]++
		}
		return a
	default:
		return nil
	}
}

// Prints agree with reflect.DeepEqual on generated values: equal values
// print alike, and a difference in any one leaf changes the print.
func TestPrintAgreesWithDeepEqual(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		a, leaves := genAttrs(seed, 0)
		b, _ := genAttrs(seed, 0)
		require.True(t, reflect.DeepEqual(a, b))
		p := printAttrs(a, 0)
		require.NotNil(t, p)
		require.Equal(t, p, printAttrs(b, 0), "seed %d: equal values, other addresses and map orders", seed)
		require.True(t, matchesPrint(p, b), "seed %d", seed)
		for leaf := 1; leaf <= leaves; leaf++ {
			c, _ := genAttrs(seed, leaf)
			require.False(t, reflect.DeepEqual(a, c), "seed %d leaf %d: the generator changed nothing", seed, leaf)
			require.False(t, matchesPrint(p, c), "seed %d leaf %d: a changed leaf", seed, leaf)
		}
	}
}

func TestPrintSeesAddedAndRemovedAttributes(t *testing.T) {
	a := map[string]interface{}{"x": 1, "y": nil}
	p := printAttrs(a, 0)
	assert.True(t, matchesPrint(p, map[string]interface{}{"x": 1, "y": nil}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"x": 1}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"x": 1, "y": nil, "z": 0}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"x": 1, "z": nil}), "renamed")
	assert.False(t, matchesPrint(p, map[string]interface{}{"x": int32(1), "y": nil}), "another type")
	assert.False(t, matchesPrint(nil, a), "no print, no match")
	assert.False(t, matchesPrint(p[:len(p)-1], a), "truncated")
	assert.False(t, matchesPrint(append(p, 0), a), "longer")
	assert.True(t, matchesPrint(printAttrs(nil, 0), map[string]interface{}{}), "no attributes")
}

func TestPrintDistinguishesNilAndEmpty(t *testing.T) {
	p := printAttrs(map[string]interface{}{"s": []string{}, "m": map[string]int{}, "p": (*int)(nil)}, 0)
	assert.False(t, matchesPrint(p, map[string]interface{}{"s": []string(nil), "m": map[string]int{}, "p": (*int)(nil)}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"s": []string{}, "m": map[string]int(nil), "p": (*int)(nil)}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"s": []string{}, "m": map[string]int{}, "p": new(int)}))
	assert.True(t, matchesPrint(p, map[string]interface{}{"s": []string{}, "m": map[string]int{}, "p": (*int)(nil)}))
}

type printNode struct {
	V    int
	Next *printNode
}

// Cycles are printed once, as references; a change anywhere in a cycle
// still shows.
func TestPrintCycles(t *testing.T) {
	m := map[string]interface{}{"v": 1}
	m["self"] = m
	s := make([]interface{}, 2)
	s[0], s[1] = s, 1
	n := &printNode{V: 1}
	n.Next = &printNode{V: 2, Next: n}
	attrs := map[string]interface{}{"m": m, "s": s, "n": n}
	p := printAttrs(attrs, 0)
	require.NotNil(t, p)
	assert.True(t, matchesPrint(p, attrs))
	n.Next.V = 3
	assert.False(t, matchesPrint(p, attrs))
	n.Next.V = 2
	s[1] = 2
	assert.False(t, matchesPrint(p, attrs))
	s[1] = 1
	m["v"] = 2
	assert.False(t, matchesPrint(p, attrs))
	m["v"] = 1
	assert.True(t, matchesPrint(p, attrs))
}

// A slice and a longer view of the same array share their data pointer and
// type; only their lengths tell them apart. Taking the longer view for a
// cycle back to the shorter one left its extra elements out of the print,
// so a change there went unseen.
func TestPrintSliceAliasOfOtherLength(t *testing.T) {
	arr := make([]interface{}, 3)
	short, long := arr[:1], arr[:3]
	short[0] = long // short holds a longer view of its own array
	arr[1], arr[2] = "b", "c"
	attrs := map[string]interface{}{"s": short}
	p := printAttrs(attrs, 0)
	require.NotNil(t, p)
	assert.True(t, matchesPrint(p, attrs))
	arr[2] = "changed"
	assert.False(t, matchesPrint(p, attrs), "an element only the longer view reaches changed")
	arr[2] = "c"
	assert.True(t, matchesPrint(p, attrs))

	// The other way round: a longer slice that holds a shorter view of
	// itself, and a view of the same length (a true cycle).
	long[1] = arr[:2]
	long[0] = arr[:3]
	p = printAttrs(map[string]interface{}{"s": long}, 0)
	require.NotNil(t, p)
	assert.True(t, matchesPrint(p, map[string]interface{}{"s": long}))
	arr[2] = "changed again"
	assert.False(t, matchesPrint(p, map[string]interface{}{"s": long}))
}

// Floats compare by their bits: an unchanged NaN is no change (DeepEqual
// would call it one), NaN map keys print alike in any order, and -0 is not
// +0.
func TestPrintFloats(t *testing.T) {
	nan := math.NaN()
	p := printAttrs(map[string]interface{}{"f": nan}, 0)
	assert.True(t, matchesPrint(p, map[string]interface{}{"f": nan}))

	keys := map[float64]int{nan: 1, 2: 3}
	keys[nan] = 2 // a second NaN key
	require.Len(t, keys, 3)
	p = printAttrs(map[string]interface{}{"m": keys}, 0)
	for i := 0; i < 20; i++ {
		assert.True(t, matchesPrint(p, map[string]interface{}{"m": keys}), "map order")
	}

	p = printAttrs(map[string]interface{}{"f": 0.0}, 0)
	assert.False(t, matchesPrint(p, map[string]interface{}{"f": math.Copysign(0, -1)}))
}

// A time's location is compared by identity: it is not followed (the
// print of the local time stays small) and times in another location
// differ, as DeepEqual sees them.
func TestPrintTimes(t *testing.T) {
	now := time.Now()
	p := printAttrs(map[string]interface{}{"t": now}, 0)
	assert.Less(t, len(p), 64)
	assert.True(t, matchesPrint(p, map[string]interface{}{"t": now}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"t": now.UTC()}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"t": now.Round(0)}), "monotonic reading dropped")
}

// Funcs and channels, which no codec of this package stores, compare by
// identity, as map keys do; pointer keys too.
func TestPrintIdentities(t *testing.T) {
	ch := make(chan int)
	f := TestPrintIdentities
	k := new(int)
	attrs := map[string]interface{}{"ch": ch, "f": f, "keys": map[*int]int{k: 1}}
	p := printAttrs(attrs, 0)
	assert.True(t, matchesPrint(p, attrs))
	assert.False(t, matchesPrint(p, map[string]interface{}{"ch": make(chan int), "f": f, "keys": map[*int]int{k: 1}}))
	assert.False(t, matchesPrint(p, map[string]interface{}{"ch": ch, "f": f, "keys": map[*int]int{new(int): 1}}))
	*k = 5 // a key's pointee is not part of the key
	assert.True(t, matchesPrint(p, attrs))
}

type printDAG struct{ A, B *printDAG }

// A value whose print would pass printLimit gets none (its session is then
// written on Close), however it got there: a large value, or shared
// pointers printed at every place they are reached.
func TestPrintLimit(t *testing.T) {
	defer func(l int) { printLimit = l }(printLimit)
	printLimit = 1 << 16
	assert.NotNil(t, printAttrs(map[string]interface{}{"b": make([]byte, printLimit-32)}, 0))
	assert.Nil(t, printAttrs(map[string]interface{}{"b": make([]byte, printLimit)}, 0))
	var d *printDAG
	for i := 0; i < 40; i++ {
		d = &printDAG{A: d, B: d}
	}
	assert.Nil(t, printAttrs(map[string]interface{}{"d": d}, 0))
	assert.False(t, matchesPrint(nil, map[string]interface{}{"d": d}))
}

// Merges diff the attributes against the print per attribute.
func TestDiffPrint(t *testing.T) {
	doc := &changeDoc{Name: "x", Refs: map[string]int{"a": 1}}
	before := map[string]interface{}{"same": 1, "inPlace": doc, "replaced": "a", "gone": true}
	p := printAttrs(before, 0)
	doc.Refs["a"] = 2
	after := map[string]interface{}{"same": 1, "inPlace": doc, "replaced": "b", "new": 0}
	c, ok := diffPrint(p, after)
	require.True(t, ok)
	assert.Equal(t, map[string]interface{}{"inPlace": doc, "replaced": "b", "new": 0}, c.set)
	assert.Equal(t, []string{"gone"}, c.deleted)

	_, ok = diffPrint(nil, after)
	assert.False(t, ok)
	_, ok = diffPrint(p[:len(p)-2], after)
	assert.False(t, ok, "a damaged print is no baseline")
}

// withAttrs reads icza/session's attributes in place, under the session's
// lock, and those of other Session implementations through Attrs.
func TestWithAttrs(t *testing.T) {
	require.NotNil(t, iczaSession.typ, "icza/session's session type is as this package expects")
	sess := session.NewSessionOptions(&session.SessOptions{Attrs: map[string]interface{}{"n": 1}})
	var got map[string]interface{}
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		withAttrs(sess, func(attrs map[string]interface{}) { got = attrs })
	}), "no copy")
	assert.Equal(t, map[string]interface{}{"n": 1}, got)

	other := attrsOnly{"n": 2}
	withAttrs(other, func(attrs map[string]interface{}) { got = attrs })
	assert.Equal(t, map[string]interface{}{"n": 2}, got)
}

// attrsOnly is a Session implementation of another package's kind.
type attrsOnly map[string]interface{}

func (a attrsOnly) Attrs() map[string]interface{} { return a }
func (attrsOnly) ID() string                      { return "attrsonly" }
func (attrsOnly) Timeout() time.Duration          { return time.Hour }
func (attrsOnly) New() bool                       { return false }
func (attrsOnly) CAttr(string) interface{}        { return nil }
func (a attrsOnly) Attr(n string) interface{}     { return a[n] }
func (a attrsOnly) SetAttr(n string, v interface{}) {
	a[n] = v
}
func (attrsOnly) Created() time.Time   { return time.Time{} }
func (attrsOnly) Accessed() time.Time  { return time.Time{} }
func (attrsOnly) Mutex() *sync.RWMutex { return nil }
func (attrsOnly) Access()              {}

// Change detection costs no allocation on Close for a small session, and
// one (the print) when the session is loaded.
func TestPrintAllocations(t *testing.T) {
	attrs := map[string]interface{}{"n": 12345, "user": "gopher", "when": time.Now(), "ok": true}
	var p []byte
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { p = printAttrs(attrs, 0) }), "printAttrs")
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() {
		if !matchesPrint(p, attrs) {
			t.Fatal("no match")
		}
	}), "matchesPrint")
}
