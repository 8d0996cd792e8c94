package aelocal

import "iter"

// The entities of a namespace are held once, by key, in their kind's
// key-ordered tree (kindIndex.byKey), which is also the kind index that
// queries read. There is no second map from encoded keys to entities: it
// cost a map slot and an encoded-key string per entity (about 70 bytes)
// and the building of the map at every load. A lookup by key descends the
// tree (a few dozen path comparisons at a million entities) instead of
// hashing an encoded key it would first have to build.
//
// A kind with entities always has its kindIndex, built at the load or at
// its first write; the last delete of a kind drops it, and the last kind
// of a namespace drops the namespace.

// kindOf returns the kind of the entity at path: its last element's.
func kindOf(path dsPath) string { return path[len(path)-1].kind }

// getLocked returns the entity at path in s, nil if none.
func (s *dsSpace) getLocked(path dsPath) *dsEntity {
	ki := s.idx[kindOf(path)]
	if ki == nil {
		return nil
	}
	e, _ := ki.byKey.Get(pathProbe(path))
	return e
}

// kindEntities yields the entities of kind in s in key order. The caller
// holds the lock and changes nothing while it ranges.
func (s *dsSpace) kindEntities(kind string) iter.Seq[*dsEntity] {
	return func(yield func(*dsEntity) bool) {
		if ki := s.idx[kind]; ki != nil {
			ki.byKey.Ascend(yield)
		}
	}
}

// lenLocked returns the number of entities in s.
func (s *dsSpace) lenLocked() int {
	n := 0
	for _, ki := range s.idx {
		n += ki.byKey.Len()
	}
	return n
}

func (d *datastoreService) lookupLocked(sp nsKey, path dsPath) *dsEntity {
	s := d.spaces[sp]
	if s == nil {
		return nil
	}
	return s.getLocked(path)
}

// storeLocked puts e at path, or removes the entity there if e is nil,
// and keeps the kind's indexes. Only writeLocked calls it.
func (d *datastoreService) storeLocked(sp nsKey, path dsPath, e *dsEntity) {
	s := d.spaces[sp]
	kind := kindOf(path)
	if e == nil {
		if s == nil {
			return
		}
		s.version = d.seq
		ki := s.idx[kind]
		if ki == nil {
			return
		}
		old, ok := ki.byKey.Delete(pathProbe(path))
		if !ok {
			return
		}
		ki.removeEntries(old)
		if ki.byKey.Len() == 0 {
			delete(s.idx, kind)
			if len(s.idx) == 0 {
				delete(d.spaces, sp)
			}
		}
		return
	}
	if s == nil {
		s = &dsSpace{idx: make(map[string]*kindIndex)}
		d.spaces[sp] = s
	}
	s.version = d.seq
	ki := s.idx[kind]
	if ki == nil {
		ki = newKindIndex()
		s.idx[kind] = ki
	}
	if old, ok := ki.byKey.ReplaceOrInsert(e); ok {
		ki.removeEntries(old)
	}
	ki.addEntries(e)
}
