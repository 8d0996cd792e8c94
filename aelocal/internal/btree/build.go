package btree

// Build returns a tree ordered by less that holds items, which should be
// in strictly ascending order (no two equal). It checks that in O(n) and
// then builds the tree bottom-up in O(n), every node full but the last
// two of each level, which share what is left so that neither is under
// minItems. Items not in strictly ascending order are inserted one by one
// instead (O(n log n), nodes fuller than google/btree's but not full): the
// tree is then what ReplaceOrInsert of each item in turn gives, so of two
// equal items the later one is kept. Build does not keep items.
func Build[T any](less func(a, b T) bool, items []T) *Tree[T] {
	return BuildFunc(less, len(items), func(i int) T { return items[i] })
}

// BuildFunc is Build of the n items item(0), ..., item(n-1), for items
// derived from another array, which then need not be copied into one of
// their own first (a load builds indexes of millions of entries, and a
// copy would add to its peak memory). item may be called more than once
// for an index, and must return the same item each time.
func BuildFunc[T any](less func(a, b T) bool, n int, item func(i int) T) *Tree[T] {
	for i := 1; i < n; i++ {
		if !less(item(i-1), item(i)) {
			t := New(less)
			for i := range n {
				t.ReplaceOrInsert(item(i))
			}
			return t
		}
	}
	return BuildSortedFunc(less, n, item)
}

// BuildSortedFunc is BuildFunc without its check: the caller guarantees
// that the items are in strictly ascending order, having just sorted them
// by a cheaper comparison than less (a load's index build: half of its
// check's cost was comparing strings and keys again). Items out of order
// make a tree whose seeks and Get miss items.
func BuildSortedFunc[T any](less func(a, b T) bool, n int, item func(i int) T) *Tree[T] {
	t := New(less)
	if n == 0 {
		return t
	}
	t.length = n
	// Each level is a sequence of items with a node before, between and
	// after them (no nodes for the leaves): it is cut into nodes of
	// maxItems items, with one item between two nodes going up to the
	// next level, until a level fits in one node, the root.
	var children []*node[T]
	for {
		nodes, up := t.level(n, item, children)
		if len(nodes) == 1 {
			t.root = nodes[0]
			return t
		}
		n, item, children = len(up), func(i int) T { return up[i] }, nodes
	}
}

// level cuts the n items item(0), ... (and children, nil for leaves, else
// n+1 of them) into nodes, and returns them with the items that separate
// them.
func (t *Tree[T]) level(n int, item func(int) T, children []*node[T]) ([]*node[T], []T) {
	// k nodes hold n-(k-1) items: the fewest k with room.
	k := (n + 1 + maxItems) / (maxItems + 1)
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = maxItems
	}
	last := n - (k - 1) - maxItems*(k-1)
	sizes[k-1] = last
	if k > 1 && last < minItems {
		both := maxItems + last
		sizes[k-2], sizes[k-1] = both-both/2, both/2
	}
	nodes := make([]*node[T], 0, k)
	up := make([]T, 0, k-1)
	next := 0
	for i, size := range sizes {
		nd := t.newNode(children == nil)
		for range size {
			nd.items = append(nd.items, item(next))
			next++
		}
		if children != nil {
			nd.children = append(nd.children, children[:size+1]...)
			children = children[size+1:]
		}
		nodes = append(nodes, nd)
		if i < k-1 {
			up = append(up, item(next))
			next++
		}
	}
	return nodes, up
}
