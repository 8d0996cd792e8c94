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
	t := New(less)
	for i := 1; i < len(items); i++ {
		if !less(items[i-1], items[i]) {
			for _, it := range items {
				t.ReplaceOrInsert(it)
			}
			return t
		}
	}
	if len(items) == 0 {
		return t
	}
	t.length = len(items)
	// Each level is a sequence of items with a node before, between and
	// after them (no nodes for the leaves): it is cut into nodes of
	// maxItems items, with one item between two nodes going up to the
	// next level, until a level fits in one node, the root.
	var children []*node[T]
	for {
		nodes, up := t.level(items, children)
		if len(nodes) == 1 {
			t.root = nodes[0]
			return t
		}
		items, children = up, nodes
	}
}

// level cuts items (and children, nil for leaves, else len(items)+1 of
// them) into nodes, and returns them with the items that separate them.
func (t *Tree[T]) level(items []T, children []*node[T]) ([]*node[T], []T) {
	// k nodes hold len(items)-(k-1) items: the fewest k with room.
	k := (len(items) + 1 + maxItems) / (maxItems + 1)
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = maxItems
	}
	last := len(items) - (k - 1) - maxItems*(k-1)
	sizes[k-1] = last
	if k > 1 && last < minItems {
		both := maxItems + last
		sizes[k-2], sizes[k-1] = both-both/2, both/2
	}
	nodes := make([]*node[T], 0, k)
	up := make([]T, 0, k-1)
	for i, size := range sizes {
		n := t.newNode(children == nil)
		n.items = append(n.items, items[:size]...)
		items = items[size:]
		if children != nil {
			n.children = append(n.children, children[:size+1]...)
			children = children[size+1:]
		}
		nodes = append(nodes, n)
		if i < k-1 {
			up = append(up, items[0])
			items = items[1:]
		}
	}
	return nodes, up
}
