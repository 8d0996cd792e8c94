package btree

import "slices"

// Writes are bottom-up: an insert goes down to a leaf, and a node that
// overflows (maxItems+1 items) is split on the way back up; a delete
// removes from a leaf, and a node left under minItems borrows from a
// sibling or merges with it on the way back up. Going down, every node on
// the path is made t's own (copied if a clone shares it).

// edge says where an insert landed relative to the whole tree.
type edge int8

const (
	middle edge = iota
	pastLast
	beforeFirst
)

// ReplaceOrInsert adds item to the tree. If an equal item was there, it
// is replaced by item and returned with true; else it returns the zero T
// and false.
func (t *Tree[T]) ReplaceOrInsert(item T) (T, bool) {
	if t.root == nil {
		t.root = t.newNode(true)
		t.root.items = append(t.root.items, item)
		t.length++
		var zero T
		return zero, false
	}
	t.root = t.mutable(t.root)
	old, replaced, at := t.insert(t.root, item, true, true)
	if len(t.root.items) > maxItems {
		left := t.root
		sep, right := t.split(left, at)
		t.root = t.newNode(false)
		t.root.items = append(t.root.items, sep)
		t.root.children = append(t.root.children, left, right)
	}
	if !replaced {
		t.length++
	}
	return old, replaced
}

// insert puts item into the subtree of n, which t owns; first and last
// say whether n is on the tree's leftmost or rightmost path. n may be
// left with maxItems+1 items, for the caller to split. It returns the
// item replaced, if any, and where in the tree the item landed.
func (t *Tree[T]) insert(n *node[T], item T, first, last bool) (old T, replaced bool, at edge) {
	i, found := t.find(n.items, item)
	if found {
		old, n.items[i] = n.items[i], item
		return old, true, middle
	}
	if n.children == nil {
		n.items = slices.Insert(n.items, i, item)
		switch {
		case last && i == len(n.items)-1:
			at = pastLast
		case first && i == 0:
			at = beforeFirst
		}
		return old, false, at
	}
	c := t.mutableChild(n, i)
	old, replaced, at = t.insert(c, item, first && i == 0, last && i == len(n.items))
	if len(c.items) > maxItems {
		sep, right := t.split(c, at)
		n.items = slices.Insert(n.items, i, sep)
		n.children = slices.Insert(n.children, i+1, right)
	}
	return old, replaced, at
}

// split cuts n, which t owns and which holds maxItems+1 items, in two: n
// keeps the first items, the returned node the last ones, and the item
// between them is returned to go up into the parent. After an insert past
// the last item of the tree, n keeps all but one item (and the new one
// goes right), so that a tree filled in ascending order has full nodes
// rather than the half-full ones a split in the middle leaves; before
// the first item, symmetrically.
func (t *Tree[T]) split(n *node[T], at edge) (T, *node[T]) {
	k := len(n.items) / 2 // items n keeps
	switch at {
	case pastLast:
		k = len(n.items) - 2
	case beforeFirst:
		k = 1
	}
	sep := n.items[k]
	r := t.newNode(n.children == nil)
	r.items = append(r.items, n.items[k+1:]...)
	clear(n.items[k:]) // no stale references for the collector
	n.items = n.items[:k]
	if n.children != nil {
		r.children = append(r.children, n.children[k+1:]...)
		clear(n.children[k+1:])
		n.children = n.children[:k+1]
	}
	return sep, r
}

// Delete removes the item equal to key and returns it with true, or
// returns the zero T and false if there is none.
func (t *Tree[T]) Delete(key T) (T, bool) {
	if t.root == nil {
		var zero T
		return zero, false
	}
	t.root = t.mutable(t.root)
	out, ok := t.remove(t.root, key, false)
	if len(t.root.items) == 0 {
		if t.root.children == nil {
			t.root = nil
		} else {
			t.root = t.root.children[0]
		}
	}
	if ok {
		t.length--
	}
	return out, ok
}

// remove deletes key (or, if max, the last item) from the subtree of n,
// which t owns and which is not empty.
func (t *Tree[T]) remove(n *node[T], key T, max bool) (out T, ok bool) {
	var i int
	var found bool
	switch {
	case max && n.children == nil:
		i, found = len(n.items)-1, true
	case max:
		i = len(n.items)
	default:
		i, found = t.find(n.items, key)
	}
	if n.children == nil {
		if !found {
			return out, false
		}
		out = n.items[i]
		n.items = slices.Delete(n.items, i, i+1)
		return out, true
	}
	c := t.mutableChild(n, i)
	if found {
		// The item of an inner node is replaced by its predecessor,
		// the last item of the subtree on its left.
		out = n.items[i]
		n.items[i], _ = t.remove(c, key, true)
		ok = true
	} else {
		out, ok = t.remove(c, key, max)
	}
	if ok && len(c.items) < minItems {
		t.rebalance(n, i)
	}
	return out, ok
}

// rebalance refills the i-th child of n (both owned by t), which holds
// fewer than minItems items: it takes an item from a sibling that can
// spare one, or else merges with a sibling (which then has at most
// minItems, so the two fit in one node).
func (t *Tree[T]) rebalance(n *node[T], i int) {
	c := n.children[i]
	switch {
	case i > 0 && len(n.children[i-1].items) > minItems:
		l := t.mutableChild(n, i-1)
		last := len(l.items) - 1
		c.items = slices.Insert(c.items, 0, n.items[i-1])
		n.items[i-1] = l.items[last]
		clear(l.items[last:])
		l.items = l.items[:last]
		if l.children != nil {
			c.children = slices.Insert(c.children, 0, l.children[last+1])
			l.children[last+1] = nil
			l.children = l.children[:last+1]
		}
	case i < len(n.items) && len(n.children[i+1].items) > minItems:
		r := t.mutableChild(n, i+1)
		c.items = append(c.items, n.items[i])
		n.items[i] = r.items[0]
		r.items = slices.Delete(r.items, 0, 1)
		if r.children != nil {
			c.children = append(c.children, r.children[0])
			r.children = slices.Delete(r.children, 0, 1)
		}
	default:
		if i == len(n.items) {
			i--
		}
		l, r := t.mutableChild(n, i), n.children[i+1]
		l.items = append(append(l.items, n.items[i]), r.items...)
		if l.children != nil {
			l.children = append(l.children, r.children...)
		}
		n.items = slices.Delete(n.items, i, i+1)
		n.children = slices.Delete(n.children, i+1, i+2)
	}
}
