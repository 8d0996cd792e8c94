package aelocal

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/protobuf/encoding/protowire"
)

// dsbenchRow is issue 25's measured entity, as dsbench stores it
// (aelocal/internal/dsbench, row): ten indexed properties, about 515 bytes
// encoded with its key. The memory and load benchmarks store it.
type dsbenchRow struct {
	Name    string
	Group   int64
	Created time.Time
	Score   float64
	Active  bool
	Email   string
	City    string
	Count   int64
	Tag     string
	Note    string
}

func newDsbenchRow(i, n int) dsbenchRow {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return dsbenchRow{
		Name:    "name-" + strconv.Itoa(i),
		Group:   int64(i % 100),
		Created: base.Add(time.Duration(i*7919%n) * time.Second),
		Score:   float64(i%1000) / 7,
		Active:  i%2 == 0,
		Email:   "user" + strconv.Itoa(i) + "@example.com",
		City:    "city-" + strconv.Itoa(i%50),
		Count:   int64(i),
		Tag:     "tag-" + strconv.Itoa(i%10),
		Note:    "a somewhat longer note about row " + strconv.Itoa(i) + ", to bring the entity to the size of a typical one; " + strings.Repeat("x", 160),
	}
}

// liveHeap is the heap's live bytes after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEntityMemory reports the exact live heap an entity of issue
// 25's table costs in the datastore (the Go heap, not the RSS, which the
// collector's setting adds to; dsbench measures that):
//
//	go test -run '^$' -bench EntityMemory -benchtime 1x ./aelocal
//
// live-B/entity is the whole server's heap after storing N entities
// through the real appengine/v2 client (PutMulti of 500), less the empty
// server's: the entity, its index entries and whatever else the datastore
// keeps per entity. entity-B/entity is the entity alone: a copy of its
// stored bytes and what newEntityRaw builds on them, with its key's path.
// BENCH_MEM_N sets N (default 100,000).
func BenchmarkEntityMemory(b *testing.B) {
	n := 100000
	if s := os.Getenv("BENCH_MEM_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for range b.N {
		s := newTestServer(b)
		ctx := middlewareContext(b, s)
		before := liveHeap()
		var keys []*datastore.Key
		for lo := 0; lo < n; lo += 500 {
			hi := min(lo+500, n)
			ks := make([]*datastore.Key, 0, hi-lo)
			rows := make([]dsbenchRow, 0, hi-lo)
			for i := lo; i < hi; i++ {
				ks = append(ks, datastore.NewKey(ctx, "Row", "", int64(i+1), nil))
				rows = append(rows, newDsbenchRow(i, n))
			}
			if _, err := datastore.PutMulti(ctx, ks, rows); err != nil {
				b.Fatal(err)
			}
			keys = append(keys, ks...)
		}
		after := liveHeap()
		runtime.KeepAlive(keys)

		// The entities alone, built again from copies of their bytes.
		d := s.datastore
		sp := nsKey{app: keys[0].AppID()}
		raws := make([]string, n)
		d.mu.Lock()
		for i, k := range keys {
			e := d.lookupLocked(sp, dsPath{{kind: "Row", id: k.IntID()}})
			if e == nil {
				d.mu.Unlock()
				b.Fatalf("entity %v not stored", k)
			}
			raws[i] = e.encoded()
		}
		d.mu.Unlock()
		keys = nil
		s.Close()
		s, d = nil, nil
		// raws keep the stored bytes alive throughout, so the difference
		// is the copies and what newEntityRaw builds on them.
		ents := make([]*dsEntity, n)
		base := liveHeap()
		rawBytes := 0
		for i, raw := range raws {
			raw = strings.Clone(raw)
			rawBytes += len(raw)
			esp, path, err := decodeEntityKey(raw)
			if err != nil {
				b.Fatal(err)
			}
			if ents[i], err = newEntityRaw(esp, path, raw); err != nil {
				b.Fatal(err)
			}
		}
		alone := liveHeap()
		runtime.KeepAlive(ents)
		runtime.KeepAlive(raws)
		b.ReportMetric(float64(after-before)/float64(n), "live-B/entity")
		b.ReportMetric(float64(alone-base)/float64(n), "entity-B/entity")
		b.ReportMetric(float64(rawBytes)/float64(n), "encoded-B/entity")
	}
}

// TestValueSizes pins the sizes issue 25's memory rests on (64-bit
// platforms): a value is three words; an entity's values carry their
// property names, so dsProps is a string and one slice; and an entity
// holds its namespace as a handle.
func TestValueSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes of a 64-bit platform")
	}
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"dsValue", unsafe.Sizeof(dsValue{}), 24},
		{"dsProps", unsafe.Sizeof(dsProps{}), 40},
		{"dsEntity", unsafe.Sizeof(dsEntity{}), 80}, // a size class of its own
	} {
		if c.got != c.want {
			t.Errorf("unsafe.Sizeof(%s{}) = %d, want %d", c.what, c.got, c.want)
		}
	}
}

// TestDecodePropsRefusesNameOverValueBits pins that a property name longer
// than a value can place (never in an entity of at most maxEntityBytes,
// only in bytes from elsewhere) is refused, not cut short.
func TestDecodePropsRefusesNameOverValueBits(t *testing.T) {
	for _, n := range []int{maxValueNameBytes, maxValueNameBytes + 1} {
		var prop []byte
		prop = protowire.AppendTag(prop, propNameField, protowire.BytesType)
		prop = protowire.AppendString(prop, strings.Repeat("n", n))
		prop = protowire.AppendTag(prop, propValueField, protowire.BytesType)
		prop = protowire.AppendBytes(prop, protowire.AppendVarint(protowire.AppendTag(nil, pvInt64Field, protowire.VarintType), 7))
		raw := protowire.AppendBytes(protowire.AppendTag(nil, entityPropertyField, protowire.BytesType), prop)
		p, err := decodeProps(string(raw))
		if n > maxValueNameBytes {
			if err == nil {
				t.Errorf("a name of %d bytes was accepted", n)
			}
			continue
		}
		if err != nil || p.len() != 1 || len(p.name(0)) != n || p.vals[0].int() != 7 {
			t.Errorf("a name of %d bytes: %v", n, err)
		}
	}
}
