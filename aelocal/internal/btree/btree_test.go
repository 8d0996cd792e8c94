package btree

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// item is a test item: ordered by key only, so that a replace is visible
// through val.
type item struct{ key, val int }

func lessItem(a, b item) bool { return a.key < b.key }

// oracle is the tree's model: a sorted slice.
type oracle []item

func (o *oracle) find(k int) (int, bool) {
	return slices.BinarySearchFunc(*o, k, func(x item, k int) int { return x.key - k })
}

func (o *oracle) replaceOrInsert(it item) (item, bool) {
	i, ok := o.find(it.key)
	if ok {
		old := (*o)[i]
		(*o)[i] = it
		return old, true
	}
	*o = slices.Insert(*o, i, it)
	return item{}, false
}

func (o *oracle) delete(k int) (item, bool) {
	i, ok := o.find(k)
	if !ok {
		return item{}, false
	}
	old := (*o)[i]
	*o = slices.Delete(*o, i, i+1)
	return old, true
}

// check verifies the tree's shape (sorted items, every leaf at one
// depth, node sizes) and that it holds exactly want, through every read.
func check(t testing.TB, tr *Tree[item], want oracle) {
	t.Helper()
	if tr.Len() != len(want) {
		t.Fatalf("Len %d, want %d", tr.Len(), len(want))
	}
	if tr.root != nil {
		depth := -1
		var walk func(n *node[item], d int)
		walk = func(n *node[item], d int) {
			if len(n.items) > maxItems || len(n.items) == 0 {
				t.Fatalf("a node of %d items", len(n.items))
			}
			if n.children == nil {
				if depth >= 0 && depth != d {
					t.Fatalf("leaves at depths %d and %d", depth, d)
				}
				depth = d
				return
			}
			if len(n.children) != len(n.items)+1 {
				t.Fatalf("%d children for %d items", len(n.children), len(n.items))
			}
			for _, c := range n.children {
				walk(c, d+1)
			}
		}
		walk(tr.root, 0)
	}
	var got oracle
	tr.Ascend(func(x item) bool { got = append(got, x); return true })
	if !slices.Equal(got, want) {
		t.Fatalf("Ascend gives %v\nwant %v", got, want)
	}
	got = got[:0]
	tr.Descend(func(x item) bool { got = append(got, x); return true })
	slices.Reverse(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Descend gives %v\nwant %v", got, want)
	}
}

// checkSeeks compares every seek of tr, at every position (on each of the
// first pivots items and between two, and past the last), both ways,
// stopping after a random count of items (mostly a few, sometimes all),
// with want.
func checkSeeks(t testing.TB, tr *Tree[item], want oracle, r *rand.Rand, pivots int) {
	t.Helper()
	stopAt := func() int {
		if r.IntN(16) == 0 {
			return len(want) + 1
		}
		return 1 + r.IntN(8)
	}
	var keys []int
	for _, x := range want[:min(pivots, len(want))] {
		keys = append(keys, x.key-1, x.key)
	}
	keys = append(keys, 1<<30)
	for _, p := range keys {
		i, ok := want.find(p)
		g, gok := tr.Get(item{key: p})
		if ok != gok || (ok && g != want[i]) {
			t.Fatalf("Get(%d) = %v, %v", p, g, gok)
		}
		stop := stopAt()
		var got oracle
		tr.AscendGreaterOrEqual(item{key: p}, func(x item) bool { got = append(got, x); return len(got) < stop })
		exp := want[i:]
		exp = exp[:min(len(exp), max(stop, 1))]
		if !slices.Equal(got, exp) {
			t.Fatalf("AscendGreaterOrEqual(%d) stop %d gives %v, want %v", p, stop, got, exp)
		}
		got = got[:0]
		tr.DescendLessOrEqual(item{key: p}, func(x item) bool { got = append(got, x); return len(got) < stop })
		j := i
		if ok {
			j++
		}
		exp = slices.Clone(want[:j])
		slices.Reverse(exp)
		exp = exp[:min(len(exp), max(stop, 1))]
		if !slices.Equal(got, exp) {
			t.Fatalf("DescendLessOrEqual(%d) stop %d gives %v, want %v", p, stop, got, exp)
		}
	}
	stop := stopAt()
	var got oracle
	tr.Ascend(func(x item) bool { got = append(got, x); return len(got) < stop })
	if exp := want[:min(len(want), max(stop, 1))]; !slices.Equal(got, exp) {
		t.Fatalf("Ascend stop %d gives %v, want %v", stop, got, exp)
	}
}

// clone is a clone taken at some moment with the contents it must keep.
type clone struct {
	tr   *Tree[item]
	want oracle
}

// TestOracle applies random inserts, replaces and deletes (of present and
// missing items) to a tree, in random, ascending and descending runs, and
// compares it with a sorted slice after each step; clones taken at random
// moments are written too and must not see each other's writes.
func TestOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 1))
	for round := range 6 {
		trees := []*clone{{tr: New(lessItem)}}
		keys := 50 + r.IntN(2000)
		if round%3 == 0 {
			keys = 1 + r.IntN(8)
		}
		for step := range 1500 {
			c := trees[r.IntN(len(trees))]
			switch op := r.IntN(100); {
			case op < 2:
				cl := &clone{tr: c.tr.Clone(), want: slices.Clone(c.want)}
				trees = append(trees, cl)
			case op < 10: // an ascending or descending run
				k, d := r.IntN(keys), 1-2*r.IntN(2)
				for range r.IntN(300) {
					it := item{k, step}
					o1, ok1 := c.tr.ReplaceOrInsert(it)
					o2, ok2 := c.want.replaceOrInsert(it)
					if o1 != o2 || ok1 != ok2 {
						t.Fatalf("ReplaceOrInsert(%v) = %v, %v, want %v, %v", it, o1, ok1, o2, ok2)
					}
					k += d
				}
			case op < 55:
				it := item{r.IntN(keys), step}
				o1, ok1 := c.tr.ReplaceOrInsert(it)
				o2, ok2 := c.want.replaceOrInsert(it)
				if o1 != o2 || ok1 != ok2 {
					t.Fatalf("ReplaceOrInsert(%v) = %v, %v, want %v, %v", it, o1, ok1, o2, ok2)
				}
			case op < 65 && len(c.want) > 0: // a run of deletes from one end or around a point
				k := c.want[r.IntN(len(c.want))].key
				for range r.IntN(200) {
					o1, ok1 := c.tr.Delete(item{key: k})
					o2, ok2 := c.want.delete(k)
					if o1 != o2 || ok1 != ok2 {
						t.Fatalf("Delete(%d) = %v, %v, want %v, %v", k, o1, ok1, o2, ok2)
					}
					k++
				}
			default:
				k := r.IntN(keys)
				o1, ok1 := c.tr.Delete(item{key: k})
				o2, ok2 := c.want.delete(k)
				if o1 != o2 || ok1 != ok2 {
					t.Fatalf("Delete(%d) = %v, %v, want %v, %v", k, o1, ok1, o2, ok2)
				}
			}
			if step%100 == 0 {
				for _, c := range trees {
					check(t, c.tr, c.want)
				}
				checkSeeks(t, c.tr, c.want, r, len(c.want))
			}
		}
		for _, c := range trees {
			check(t, c.tr, c.want)
			checkSeeks(t, c.tr, c.want, r, len(c.want))
		}
	}
}

// TestBuildEqualsInserts pins that Build of 0, 1 and n items holds what
// inserting them gives, with full nodes, and that the tree takes writes
// afterwards; and that unsorted input or duplicates fall back to inserts.
func TestBuildEqualsInserts(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 2))
	sizes := []int{0, 1, 2, 31, 32, 63, 64, 65, 127, 128, 4095, 4096, 4097, 63*64 + 63, 100000}
	for range 8 {
		sizes = append(sizes, r.IntN(5000))
	}
	for _, n := range sizes {
		var want oracle
		for i := range n {
			want = append(want, item{3 * i, i})
		}
		tr := Build(lessItem, slices.Clone(want))
		check(t, tr, want)
		// Every node but the last two of a level is full.
		var level []*node[item]
		if tr.root != nil {
			level = []*node[item]{tr.root}
		}
		for len(level) > 0 {
			var next []*node[item]
			for i, nd := range level {
				if i < len(level)-2 && len(nd.items) != maxItems {
					t.Fatalf("n=%d: node %d of %d holds %d items", n, i, len(level), len(nd.items))
				}
				if len(level) > 1 && len(nd.items) < minItems {
					t.Fatalf("n=%d: node %d of %d holds %d items", n, i, len(level), len(nd.items))
				}
				next = append(next, nd.children...)
			}
			level = next
		}
		if n < 5000 {
			checkSeeks(t, tr, want, r, len(want))
		}
		for range 200 {
			k := r.IntN(3*n + 3)
			if r.IntN(2) == 0 {
				tr.ReplaceOrInsert(item{k, -1})
				want.replaceOrInsert(item{k, -1})
			} else {
				tr.Delete(item{key: k})
				want.delete(k)
			}
		}
		check(t, tr, want)
	}
	// Unsorted, and with duplicates: the later of two equal items stays.
	in := []item{{5, 0}, {1, 0}, {5, 1}, {3, 0}, {1, 1}}
	check(t, Build(lessItem, in), oracle{{1, 1}, {3, 0}, {5, 1}})
	check(t, Build(lessItem, []item{{1, 0}, {1, 1}}), oracle{{1, 1}})
}

// TestAppendFillsNodes pins the edge splits: items inserted in ascending
// or descending order leave every node but those on the growing edge
// full but one item.
func TestAppendFillsNodes(t *testing.T) {
	for _, desc := range []bool{false, true} {
		tr := New(lessItem)
		const n = 100000
		for i := range n {
			k := i
			if desc {
				k = n - i
			}
			tr.ReplaceOrInsert(item{k, 0})
		}
		var nodes, items int
		var walk func(*node[item])
		walk = func(nd *node[item]) {
			nodes++
			items += len(nd.items)
			for _, c := range nd.children {
				walk(c)
			}
		}
		walk(tr.root)
		// With nodes of maxItems-1 items, n items take about
		// n/(maxItems-1) nodes; a split in the middle takes twice that.
		if limit := n/(maxItems-1) + n/(maxItems-1)/(maxItems-1) + 8; nodes > limit {
			t.Errorf("desc=%v: %d nodes for %d items, want at most %d", desc, nodes, n, limit)
		}
	}
}

// TestClonesConcurrent reads clones from other goroutines while the
// original is written (run with -race): each clone must keep what it
// held when it was taken.
func TestClonesConcurrent(t *testing.T) {
	tr := New(lessItem)
	var want oracle
	for i := range 5000 {
		tr.ReplaceOrInsert(item{2 * i, 0})
		want = append(want, item{2 * i, 0})
	}
	r := rand.New(rand.NewPCG(25, 3))
	var wg sync.WaitGroup
	for g := range 4 {
		c, cw := tr.Clone(), slices.Clone(want)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(25, uint64(g)))
			for range 5 {
				check(t, c, cw)
				checkSeeks(t, c, cw, rr, 300)
			}
			// A clone may be written too, by its own goroutine.
			for i := range 2000 {
				c.ReplaceOrInsert(item{2*i + 1, g})
				cw.replaceOrInsert(item{2*i + 1, g})
			}
			check(t, c, cw)
		}()
		for range 2000 {
			k := r.IntN(12000)
			if r.IntN(2) == 0 {
				tr.ReplaceOrInsert(item{k, g + 1})
				want.replaceOrInsert(item{k, g + 1})
			} else {
				tr.Delete(item{key: k})
				want.delete(k)
			}
		}
	}
	wg.Wait()
	check(t, tr, want)
}

// FuzzOracle applies the operations a byte string spells to a tree and
// its clones and compares them with sorted slices.
func FuzzOracle(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 250, 7, 8, 9, 128, 3, 200, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		trees := []*clone{{tr: New(lessItem)}}
		for i := 0; i+1 < len(ops); i += 2 {
			op, k := ops[i], int(ops[i+1])
			c := trees[int(op)%len(trees)]
			switch op % 4 {
			case 0, 1:
				c.tr.ReplaceOrInsert(item{k, i})
				c.want.replaceOrInsert(item{k, i})
			case 2:
				c.tr.Delete(item{key: k})
				c.want.delete(k)
			default:
				if op > 200 {
					trees = append(trees, &clone{tr: c.tr.Clone(), want: slices.Clone(c.want)})
				} else {
					for j := range int(op) {
						c.tr.ReplaceOrInsert(item{k + j, i})
						c.want.replaceOrInsert(item{k + j, i})
					}
				}
			}
		}
		for _, c := range trees {
			check(t, c.tr, c.want)
		}
	})
}
