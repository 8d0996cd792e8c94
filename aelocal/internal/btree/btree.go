// Package btree is aelocal's ordered container: a generic in-memory B-tree
// with O(1) lazy copy-on-write clones and an O(n) bulk build.
//
// The method names and contracts are github.com/google/btree's BTreeG
// (which aelocal used before): ReplaceOrInsert, Delete, Get, Len, Clone,
// Ascend, AscendGreaterOrEqual, Descend, DescendLessOrEqual. What this
// package adds is what a datastore loading millions of index entries needs
// and google/btree lacks:
//
//   - Build (and BuildFunc) makes a tree of full nodes from sorted items
//     in O(n), where inserting them one by one costs O(n log n) and, in
//     ascending order, leaves nodes half full;
//   - an insert past the last item of the tree (keys of sequential IDs,
//     a creation time) splits a full node so that the left part stays full
//     and only the new item moves right, and symmetrically for an insert
//     before the first item; google/btree always splits in the middle, so
//     such a tree ends with every node half full.
//
// A Tree is not safe for concurrent use, except as Clone says: once Clone
// returns, the tree and its clone may be used by different goroutines.
package btree

// maxItems is the most items a node holds. 63 items of a 16-byte entry
// (aelocal's property index entry) fill 1,008 bytes; item arrays are
// allocated with room for one more (maxItems+1, a power of two: 1,024
// bytes, or 512 for a pointer, both size classes of the allocator) so that
// an insert into a full node can overflow by one before the node splits,
// without a reallocation. Measured (BENCHMARKS.md), nodes of 31 and 127
// items cost the same bytes per entry within 4%, and their times were
// within the shared machine's noise; 63 keeps the tree at 4 levels up to
// 16 million entries.
const maxItems = 63

// minItems is the fewest items a node other than the root holds after a
// Delete rebalances it. A node that an append or prepend split leaves
// with fewer (the new edge node) fills up as the pattern goes on; Delete
// needs only that two nodes under minItems merge into one that fits,
// which maxItems = 2*minItems+1 guarantees.
const minItems = maxItems / 2

// Tree is a B-tree of items ordered by its less function. The zero Tree
// is not usable; make one with New or Build.
type Tree[T any] struct {
	less   func(a, b T) bool
	root   *node[T] // nil when empty
	length int
	// own marks the nodes this tree may modify in place: those it created
	// since its last Clone. Every other node is shared with a clone and is
	// copied before a change (copy-on-write).
	own *owner
}

// owner identifies the tree that created a node. It has a byte of
// storage because pointers to distinct zero-size values may be equal.
type owner struct{ _ byte }

type node[T any] struct {
	items    []T
	children []*node[T] // nil in a leaf; else len(items)+1 children
	own      *owner
}

// New returns an empty tree ordered by less, a strict weak order: items a
// and b are the same item when neither is less than the other.
func New[T any](less func(a, b T) bool) *Tree[T] {
	return &Tree[T]{less: less, own: new(owner)}
}

// Len returns the number of items in the tree.
func (t *Tree[T]) Len() int { return t.length }

// Clone returns a copy of the tree in O(1). Nodes are shared until either
// tree writes to them, and then copied by the writer, so a write to one
// never shows in the other. Once Clone returns, t and the clone may be
// used from different goroutines at the same time (but Clone itself
// writes t: it must not run while another goroutine uses t).
func (t *Tree[T]) Clone() *Tree[T] {
	c := *t
	t.own, c.own = new(owner), new(owner)
	return &c
}

// Get returns the item equal to key and true, or the zero T and false.
func (t *Tree[T]) Get(key T) (T, bool) {
	for n := t.root; n != nil; {
		i, found := t.find(n.items, key)
		if found {
			return n.items[i], true
		}
		if n.children == nil {
			break
		}
		n = n.children[i]
	}
	var zero T
	return zero, false
}

// find returns the position of the first item of items not less than
// key, and whether that item equals key.
func (t *Tree[T]) find(items []T, key T) (int, bool) {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.less(items[m], key) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(items) && !t.less(key, items[lo])
}

// newNode returns an empty node owned by t, with room for an overflow.
func (t *Tree[T]) newNode(leaf bool) *node[T] {
	n := &node[T]{items: make([]T, 0, maxItems+1), own: t.own}
	if !leaf {
		n.children = make([]*node[T], 0, maxItems+2)
	}
	return n
}

// mutable returns n if t owns it, or else a copy of n that t owns.
func (t *Tree[T]) mutable(n *node[T]) *node[T] {
	if n.own == t.own {
		return n
	}
	c := t.newNode(n.children == nil)
	c.items = append(c.items, n.items...)
	if n.children != nil {
		c.children = append(c.children, n.children...)
	}
	return c
}

// mutableChild makes the i-th child of n (which t owns) one that t owns.
func (t *Tree[T]) mutableChild(n *node[T], i int) *node[T] {
	c := t.mutable(n.children[i])
	n.children[i] = c
	return c
}
