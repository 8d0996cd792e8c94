package btree

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// The benchmarks fill a tree of benchN entries of 16 bytes (a key and a
// pointer, like aelocal's index entries) and report the time and the
// heap bytes per entry:
//
//	go test -run '^$' -bench . -benchtime 3x ./aelocal/internal/btree

const benchN = 200_000

type entry struct {
	key int
	p   *int
}

func lessEntry(a, b entry) bool { return a.key < b.key }

// inserter is what the benchmarks need of a tree; google/btree's BTreeG
// has it too, so the same code measures both.
type inserter interface {
	ReplaceOrInsert(entry) (entry, bool)
	Get(entry) (entry, bool)
}

func benchKeys(order string) []entry {
	es := make([]entry, benchN)
	for i := range es {
		es[i].key = i
	}
	switch order {
	case "random":
		r := rand.New(rand.NewPCG(25, 4))
		r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	case "descending":
		slices.Reverse(es)
	}
	return es
}

// heapBytes is the live heap after a collection.
func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchFill reports ns and bytes per entry of filling a tree made by
// newTree, by inserts in order or (newTree nil) by Build.
func benchFill(b *testing.B, order string, newTree func() inserter) {
	es := benchKeys(order)
	var kept inserter
	var bytes uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		kept = nil
		before := heapBytes()
		b.StartTimer()
		var t inserter
		if newTree == nil {
			t = Build(lessEntry, es)
		} else {
			t = newTree()
			for _, e := range es {
				t.ReplaceOrInsert(e)
			}
		}
		b.StopTimer()
		kept = t
		bytes = heapBytes() - before
		b.StartTimer()
	}
	runtime.KeepAlive(kept)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchN), "ns/entry")
	b.ReportMetric(float64(bytes)/benchN, "B/entry")
	b.ReportMetric(0, "ns/op")
}

// benchGet reports ns per Get of a random present key in a tree filled
// in random order.
func benchGet(b *testing.B, t inserter) {
	es := benchKeys("random")
	for _, e := range es {
		t.ReplaceOrInsert(e)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, ok := t.Get(es[i%benchN]); !ok {
			b.Fatal("missing")
		}
	}
}

func newTree() inserter { return New(lessEntry) }

func BenchmarkInsertRandom(b *testing.B)     { benchFill(b, "random", newTree) }
func BenchmarkInsertAscending(b *testing.B)  { benchFill(b, "ascending", newTree) }
func BenchmarkInsertDescending(b *testing.B) { benchFill(b, "descending", newTree) }
func BenchmarkBuild(b *testing.B)            { benchFill(b, "ascending", nil) }
func BenchmarkGet(b *testing.B)              { benchGet(b, newTree()) }
