package aelocal

import (
	"runtime"
	"slices"
	"sync"

	"github.com/google/btree"
)

// buildKindIndex builds the indexes of one kind from its entities, as
// adding each to a new kindIndex would (kindIndex.add), for a load
// (buildIndexes): the kind index and each single-property index are built
// by up to workers goroutines at once, each B-tree by one of them. The
// entities are added in descending key order: google/btree splits a full
// node in two and keeps filling the half that receives the next entry, so
// entries added in ascending order leave every node half full, and in
// descending order full (the indexes of 100,000 entities of ten
// properties took 255 bytes per entity instead of 400). The kind index,
// and the entries of properties that follow the key (a creation time, a
// counter), also grow at one end, which is about three times as fast as
// the random order of a map. ents must be in ascending key order.
// TestBuildKindIndexMatchesAdd pins that the result equals add's.
func buildKindIndex(ents []*dsEntity, workers int) *kindIndex {
	ki := newKindIndex()
	names := make(map[string]bool)
	for _, e := range ents {
		for name := range e.props.all() {
			names[name] = true
		}
	}
	type job struct {
		name string
		t    *btree.BTreeG[propEntry]
	}
	jobs := make([]job, 0, len(names))
	for name := range names {
		jobs = append(jobs, job{name, btree.NewG(indexDegree, lessEntry)})
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, len(jobs)+1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if i < 0 {
					for _, e := range slices.Backward(ents) {
						ki.byKey.ReplaceOrInsert(e)
					}
					continue
				}
				j := jobs[i]
				for _, e := range slices.Backward(ents) {
					vals := e.props.get(j.name)
					switch len(vals) {
					case 0:
					case 1:
						j.t.ReplaceOrInsert(propEntry{v: &vals[0], e: e})
					default:
						for _, v := range entryValues(vals) {
							j.t.ReplaceOrInsert(propEntry{v: v, e: e})
						}
					}
				}
			}
		}()
	}
	next <- -1
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, j := range jobs {
		ki.props[j.name] = j.t
	}
	return ki
}

// loadWorkers is how many goroutines build indexes at a load.
func loadWorkers() int { return runtime.GOMAXPROCS(0) }
