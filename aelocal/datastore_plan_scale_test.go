package aelocal

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// scaleBase is the first Created time of the rows scaleRows writes.
var scaleBase = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// scaleParents is how many parents the rows of scaleRows share: an
// ancestor has n/scaleParents rows.
const scaleParents = 40

// scaleRows stores n rows of kind Row straight into s's datastore (the
// query tests measure queries, not n Puts through the client): row i has
// key /P,i%scaleParents+1/Row,i+1 and properties Name (unique), Group
// (i%100: an equality on it matches 1%), Team (i%10), City (i%50), Created (a time, a
// second apart, in an order unrelated to the key) and Tags (two values of
// eight), and three rows of kind Other for queries of no kind.
func scaleRows(t testing.TB, s *Server, app string, n int) {
	t.Helper()
	d := s.datastore
	sp := nsKey{app: app}
	entity := func(path dsPath, props func(add func(name string, v dsValue))) *dsEntity {
		ep, err := newMsg("appengine.v2.EntityProto")
		if err != nil {
			t.Fatal(err)
		}
		writeRef(ep.Mutable("key"), app, "", path)
		eg := ep.Mutable("entity_group").AppendMsg("element")
		eg.Set("type", path[0].kind)
		eg.Set("id", path[0].id)
		props(func(name string, v dsValue) {
			p := ep.AppendMsg("property")
			p.Set("name", name)
			p.Set("multiple", name == "Tags")
			if v.typ() == vInt && name == "Created" {
				p.Set("meaning", 7) // GD_WHEN
			}
			writeValue(p.Mutable("value"), v)
		})
		e, err := newEntity(sp, path, ep)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	var ws []dsWrite
	flush := func() {
		d.mu.Lock()
		d.applyLocked(ws)
		d.mu.Unlock()
		ws = ws[:0]
	}
	for i := range n {
		path := dsPath{{kind: "P", id: int64(i%scaleParents + 1)}, {kind: "Row", id: int64(i + 1)}}
		created := scaleBase.Add(time.Duration(i*7919%n) * time.Second).UnixMicro()
		ws = append(ws, dsWrite{sp, path, entity(path, func(add func(string, dsValue)) {
			add("Name", stringValue(fmt.Sprintf("row%07d", i)))
			add("Group", intValue(int64(i%100)))
			add("Team", intValue(int64(i%10)))
			add("City", stringValue(fmt.Sprintf("c%d", i%50)))
			add("Created", intValue(created))
			add("Tags", stringValue(fmt.Sprintf("t%d", i%8)))
			add("Tags", stringValue(fmt.Sprintf("t%d", (i+3)%8)))
		})})
		if len(ws) == 1000 {
			flush()
		}
	}
	for i := range 3 {
		path := dsPath{{kind: "Other", id: int64(i + 1)}}
		ws = append(ws, dsWrite{sp, path, entity(path, func(add func(string, dsValue)) {
			add("Name", stringValue("other"))
		})})
	}
	flush()
}

// scaleShape is a query of a planned shape, on the rows of scaleRows.
type scaleShape struct {
	name string
	q    *datastore.Query
}

// scaleSetup starts a server with n rows (scaleRows) and returns it, a
// context for it, and a query of each planned shape (without a limit).
func scaleSetup(t testing.TB, n int) (*Server, context.Context, []scaleShape) {
	t.Helper()
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	app := datastore.NewKey(ctx, "X", "", 1, nil).AppID()
	scaleRows(t, s, app, n)
	parent := datastore.NewKey(ctx, "P", "", 7, nil)
	// A cursor at N/2, in key order (taking it walks N/2 entries).
	it := datastore.NewQuery("Row").KeysOnly().Offset(n / 2).Limit(1).Run(ctx)
	if _, err := it.Next(nil); err != nil {
		t.Fatal(err)
	}
	mid, err := it.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	// A cursor after 40 results of a composite index's order.
	it = datastore.NewQuery("Row").Filter("Team =", int64(7)).Order("-Created").KeysOnly().Limit(40).Run(ctx)
	for range 40 {
		if _, err := it.Next(nil); err != nil {
			t.Fatal(err)
		}
	}
	compMid, err := it.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	after := scaleBase.Add(time.Duration(n/2) * time.Second)
	return s, ctx, []scaleShape{
		{"kind", datastore.NewQuery("Row")},
		{"kind keys-only", datastore.NewQuery("Row").KeysOnly()},
		{"kind descending", datastore.NewQuery("Row").Order("-__key__")},
		{"page after a cursor at N/2", datastore.NewQuery("Row").Start(mid)},
		{"equality ~1%", datastore.NewQuery("Row").Filter("Group =", int64(7))},
		{"two equalities (merge join)", datastore.NewQuery("Row").Filter("Team =", int64(7)).Filter("City =", "c7")},
		{"order by a time", datastore.NewQuery("Row").Order("-Created")},
		{"inequality", datastore.NewQuery("Row").Filter("Created >", after)},
		{"equality + order (composite)", datastore.NewQuery("Row").Filter("Team =", int64(7)).Order("-Created")},
		{"composite, page after a cursor", datastore.NewQuery("Row").Filter("Team =", int64(7)).Order("-Created").Start(compMid)},
		{"two equalities + inequality (composite)", datastore.NewQuery("Row").Filter("Team =", int64(7)).Filter("City =", "c7").Filter("Created >=", scaleBase)},
		{"ancestor + order (composite)", datastore.NewQuery("Row").Ancestor(parent).Order("Created")},
		{"multi-valued equality + order (composite)", datastore.NewQuery("Row").Filter("Tags =", "t3").Order("Name")},
		{"two orders (composite)", datastore.NewQuery("Row").Order("City").Order("-Created")},
		{"no kind, keys-only", datastore.NewQuery("").KeysOnly().Filter("__key__ >", parent)},
		{"projection", datastore.NewQuery("Row").Project("Created").Order("Created")},
		{"distinct", datastore.NewQuery("Row").Project("City").Distinct()},
		{"distinct on, not first by name (composite)", datastore.NewQuery("Row").Project("City", "Group").DistinctOn("Group")},
		{"offset 1,000 keys-only", datastore.NewQuery("Row").KeysOnly().Offset(1000)},
		{"equality, offset 10", datastore.NewQuery("Row").Filter("City =", "c3").Offset(10)},
	}
}

// queryCost is what a query read: index entries, entities loaded, results.
type queryCost struct {
	entries, loaded int64
	results         int
}

// measure runs q to its end (or its limit) and returns what it read.
func measure(t *testing.T, ctx context.Context, d *datastoreService, q *datastore.Query) queryCost {
	t.Helper()
	d.mu.Lock()
	before := d.stats
	evaluated := d.evaluated
	d.mu.Unlock()
	n := 0
	for it := q.Run(ctx); ; n++ {
		_, err := it.Next(nil)
		if err == datastore.Done {
			break
		}
		if err != nil {
			t.Fatalf("%v: %v", q, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.evaluated != evaluated {
		t.Errorf("%v: %d full evaluations; want it planned", q, d.evaluated-evaluated)
	}
	return queryCost{d.stats.entries - before.entries, d.stats.loaded - before.loaded, n}
}

// TestQueryCostFollowsRows checks, with the exact counters of index
// entries read and entities loaded, that a limit-20 query of each planned
// shape reads the same entries at 2,000 and at 200,000 entities: its cost
// follows the rows it returns, not the kind's size. The page after a
// cursor at N/2 reads what the first page reads; an offset skips index
// entries without loading entities; keys-only queries, projections and
// Count load none.
//
// With -short or the race detector (which the repository's one test
// command uses) the larger size is 8,000, to spare minutes of loading: the
// counters are exact either way. The 200,000 run:
//
//	go test -count=1 -run TestQueryCostFollowsRows -v ./aelocal
func TestQueryCostFollowsRows(t *testing.T) {
	sizes := []int{2000, 200000}
	if testing.Short() || raceDetector {
		sizes = []int{2000, 8000}
	}
	costs := make([]map[string]queryCost, len(sizes))
	var names []string
	for si, n := range sizes {
		s, ctx, shapes := scaleSetup(t, n)
		d := s.datastore
		costs[si] = make(map[string]queryCost)
		for _, sh := range shapes {
			c := measure(t, ctx, d, sh.q.Limit(20))
			if c.results != 20 {
				t.Errorf("n=%d: %s: %d results; want 20", n, sh.name, c.results)
			}
			costs[si][sh.name] = c
			if si == 0 {
				names = append(names, sh.name)
			}
		}
		// Count reads the entries of its answer, and loads nothing.
		c := measure(t, ctx, d, datastore.NewQuery("Row").Filter("Group =", int64(7)).KeysOnly().Offset(1<<31-1).Limit(0))
		if c.loaded != 0 || c.entries > int64(n/100)+int64(n/100)/1000+3 {
			t.Errorf("n=%d: Count of 1%%: %d entries read, %d entities loaded; want about %d, 0", n, c.entries, c.loaded, n/100)
		}
		// Metadata: a seek per property and type.
		var props []datastore.PropertyList
		if _, err := datastore.NewQuery("__property__").GetAll(ctx, &props); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		small, large := costs[0][name], costs[1][name]
		t.Logf("%-45s %4d entries, %2d entities loaded", name, large.entries, large.loaded)
		if small != large {
			t.Errorf("%s: %+v at %d entities, %+v at %d; want the same", name, small, sizes[0], large, sizes[1])
		}
		// About an entry per result; a merge join seeks each term
		// once or twice per result, a query of no kind each kind once.
		if limit := int64(25); !strings.Contains(name, "offset") && large.entries > limit && !(strings.Contains(name, "merge join") && large.entries <= 4*limit) {
			t.Errorf("%s: %d index entries read for 20 results; want about 20", name, large.entries)
		}
	}
}
