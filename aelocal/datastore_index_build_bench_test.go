//go:build unix

package aelocal

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBuildKindIndex times the index build of a load (buildKindIndex,
// as dsImage.finish runs it) over one kind of dsbench's entities of ten
// indexed properties, and reports per entity the wall and CPU time and
// the live heap of the built indexes:
//
//	go test -run '^$' -bench BuildKindIndex -benchtime 3x ./aelocal
//
// BENCH_BUILD_SIZES (default "200000") sets the sizes.
func BenchmarkBuildKindIndex(b *testing.B) {
	sizes := "200000"
	if s := os.Getenv("BENCH_BUILD_SIZES"); s != "" {
		sizes = s
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("n="+f, func(b *testing.B) {
			ents := benchRows(b, n)
			var ki *kindIndex
			var heap uint64
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				ki = nil
				before := liveHeap()
				c0 := cpuTime()
				b.StartTimer()
				ki = buildKindIndex(ents, loadWorkers())
				b.StopTimer()
				cpu += cpuTime() - c0
				heap = liveHeap() - before
				b.StartTimer()
			}
			runtime.KeepAlive(ki)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "wall-ms/op")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(heap)/float64(n), "index-B/entity")
		})
	}
}

// benchRows returns n entities as dsbench stores them (its row), in key
// order.
func benchRows(b *testing.B, n int) []*dsEntity {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ents := make([]*dsEntity, 0, n)
	for i := range n {
		ep, _ := newMsg("appengine.v2.EntityProto")
		path := dsPath{{kind: "Row", id: int64(i + 1)}}
		writeRef(ep.Mutable("key"), "app", "", path)
		ep.Mutable("entity_group").AppendMsg("element").Set("type", "Row")
		prop := func(name, field string, v any) {
			p := ep.AppendMsg("property")
			p.Set("name", name)
			p.Set("multiple", false)
			p.Mutable("value").Set(field, v)
		}
		prop("Name", "stringValue", "name-"+strconv.Itoa(i))
		prop("Group", "int64Value", int64(i%100))
		prop("Created", "int64Value", base.Add(time.Duration(i*7919%n)*time.Second).UnixMicro())
		prop("Score", "doubleValue", float64(i%1000)/7)
		prop("Active", "booleanValue", i%2 == 0)
		prop("Email", "stringValue", "user"+strconv.Itoa(i)+"@example.com")
		prop("City", "stringValue", "city-"+strconv.Itoa(i%50))
		prop("Count", "int64Value", int64(i))
		prop("Tag", "stringValue", "tag-"+strconv.Itoa(i%10))
		prop("Note", "stringValue", "a somewhat longer note about row "+strconv.Itoa(i)+", to bring the entity to the size of a typical one; "+strings.Repeat("x", 160))
		sp, path, err := parseKey(ep.Msg("key"), "key", false)
		if err != nil {
			b.Fatal(err)
		}
		e, err := newEntity(sp, path, ep)
		if err != nil {
			b.Fatal(err)
		}
		ents = append(ents, e)
	}
	slices.SortFunc(ents, func(a, b *dsEntity) int { return comparePath(a.path, b.path) })
	return ents
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
