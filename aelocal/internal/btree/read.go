package btree

// Ascend calls fn for every item in ascending order until fn returns
// false. The tree must not be written during the walk (a clone may).
func (t *Tree[T]) Ascend(fn func(T) bool) {
	if t.root != nil {
		t.ascend(t.root, nil, fn)
	}
}

// AscendGreaterOrEqual calls fn for every item not less than pivot, in
// ascending order, until fn returns false.
func (t *Tree[T]) AscendGreaterOrEqual(pivot T, fn func(T) bool) {
	if t.root != nil {
		t.ascend(t.root, &pivot, fn)
	}
}

// Descend calls fn for every item in descending order until fn returns
// false.
func (t *Tree[T]) Descend(fn func(T) bool) {
	if t.root != nil {
		t.descend(t.root, nil, fn)
	}
}

// DescendLessOrEqual calls fn for every item not greater than pivot, in
// descending order, until fn returns false.
func (t *Tree[T]) DescendLessOrEqual(pivot T, fn func(T) bool) {
	if t.root != nil {
		t.descend(t.root, &pivot, fn)
	}
}

// ascend walks the subtree of n from the first item not less than *pivot
// (from the start if pivot is nil); it returns false once fn has.
func (t *Tree[T]) ascend(n *node[T], pivot *T, fn func(T) bool) bool {
	i := 0
	if pivot != nil {
		i, _ = t.find(n.items, *pivot)
	}
	for ; i < len(n.items); i++ {
		// Only the first child visited can hold items before the
		// pivot; those after it are all past it.
		if n.children != nil && !t.ascend(n.children[i], pivot, fn) {
			return false
		}
		pivot = nil
		if !fn(n.items[i]) {
			return false
		}
	}
	return n.children == nil || t.ascend(n.children[len(n.items)], pivot, fn)
}

// descend walks the subtree of n backwards from the last item not greater
// than *pivot (from the end if pivot is nil); it returns false once fn
// has.
func (t *Tree[T]) descend(n *node[T], pivot *T, fn func(T) bool) bool {
	i := len(n.items)
	if pivot != nil {
		i = t.after(n.items, *pivot)
	}
	if n.children != nil && !t.descend(n.children[i], pivot, fn) {
		return false
	}
	for i--; i >= 0; i-- {
		if !fn(n.items[i]) {
			return false
		}
		if n.children != nil && !t.descend(n.children[i], nil, fn) {
			return false
		}
	}
	return true
}

// after returns the position of the first item of items greater than
// key.
func (t *Tree[T]) after(items []T, key T) int {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.less(key, items[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
