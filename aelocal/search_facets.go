package aelocal

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Faceted search: refinements narrow the results (refinements of one facet
// are alternatives, of different facets all apply); facet requests and
// automatic discovery count the facet values of the first facet_depth
// results. As in the SDK stub, a number facet without ranges or values
// asked for is reported as one range from its smallest to its largest
// value, and values asked for by name are listed even when none matched.

// searchRange is a facet range, [start, end); an unset bound is infinite.
type searchRange struct {
	start, end       float64
	hasStart, hasEnd bool
}

func (r searchRange) has(x float64) bool {
	return (!r.hasStart || x >= r.start) && (!r.hasEnd || x < r.end)
}

// label is the name production gives a range asked for without one.
func (r searchRange) label() string {
	s, e := "-Infinity", "Infinity"
	if r.hasStart {
		s = searchFormatNum(r.start)
	}
	if r.hasEnd {
		e = searchFormatNum(r.end)
	}
	return "[" + s + "," + e + ")"
}

func searchFormatNum(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

func parseSearchRange(m pmsg) (searchRange, error) {
	var r searchRange
	var err error
	if m.Has("start") {
		r.hasStart = true
		if r.start, err = strconv.ParseFloat(m.Str("start"), 64); err != nil {
			return r, fmt.Errorf("invalid facet range start %q", m.Str("start"))
		}
	}
	if m.Has("end") {
		r.hasEnd = true
		if r.end, err = strconv.ParseFloat(m.Str("end"), 64); err != nil {
			return r, fmt.Errorf("invalid facet range end %q", m.Str("end"))
		}
	}
	if !r.hasStart && !r.hasEnd {
		return r, fmt.Errorf("either start or end of a facet range must be set")
	}
	return r, nil
}

// searchFacetAsk is one facet a search names.
type searchFacetAsk struct {
	name   string
	limit  int
	values []string
	ranges []searchRange
	labels []string // of ranges
}

// searchRefinement is one refinement: a value, or a range.
type searchRefinement struct {
	value    string
	hasValue bool
	rng      searchRange
}

// searchFacetReq is what a search asks about facets.
type searchFacetReq struct {
	asks       []searchFacetAsk
	discover   int // facets to discover
	valueLimit int // values per discovered facet, and per asked one by default
	depth      int
	refs       map[string][]searchRefinement
	refineKeys []string
}

func parseFacetRequest(p pmsg) (*searchFacetReq, error) {
	f := &searchFacetReq{discover: int(p.Int("auto_discover_facet_count")), valueLimit: 10, depth: 1000}
	if p.Has("facet_auto_detect_param") && p.Msg("facet_auto_detect_param").Has("value_limit") {
		f.valueLimit = int(p.Msg("facet_auto_detect_param").Int("value_limit"))
	}
	if p.Has("facet_depth") {
		f.depth = int(p.Int("facet_depth"))
	}
	if f.discover < 0 || f.discover > searchMaxFacets || f.valueLimit < 0 || f.valueLimit > searchMaxFacets {
		return nil, fmt.Errorf("facet and value limits must be between 0 and %d", searchMaxFacets)
	}
	if f.depth < 0 || f.depth > searchMaxFacetDepth {
		return nil, fmt.Errorf("facet depth must be between 0 and %d, got %d", searchMaxFacetDepth, f.depth)
	}
	for _, inc := range p.Msgs("include_facet") {
		ask := searchFacetAsk{name: inc.Str("name"), limit: f.valueLimit}
		if err := searchValidFieldName(ask.name); err != nil {
			return nil, err
		}
		ip := inc.Msg("params")
		if ip.Has("value_limit") {
			ask.limit = int(ip.Int("value_limit"))
			if ask.limit < 0 || ask.limit > searchMaxFacets {
				return nil, fmt.Errorf("value limit must be between 0 and %d", searchMaxFacets)
			}
		}
		for _, v := range ip.BytesList("value_constraint") {
			if len(v) == 0 {
				return nil, fmt.Errorf("Facet value is empty")
			}
			ask.values = append(ask.values, string(v))
		}
		for _, rm := range ip.Msgs("range") {
			r, err := parseSearchRange(rm)
			if err != nil {
				return nil, err
			}
			label := r.label()
			if rm.Has("name") {
				label = rm.Str("name")
			}
			ask.ranges = append(ask.ranges, r)
			ask.labels = append(ask.labels, label)
		}
		if len(ask.values) > 0 && len(ask.ranges) > 0 {
			return nil, fmt.Errorf("Manual facet request should either specify range or value constraint, not both")
		}
		f.asks = append(f.asks, ask)
	}
	f.refs = make(map[string][]searchRefinement)
	for _, r := range p.Msgs("facet_refinement") {
		name := r.Str("name")
		ref := searchRefinement{value: r.Str("value"), hasValue: r.Has("value")}
		switch {
		case ref.hasValue && r.Has("range"):
			return nil, fmt.Errorf("Refinement request for facet %s should either specify range or value constraint, not both.", name)
		case ref.hasValue && ref.value == "":
			return nil, fmt.Errorf("Facet value is empty")
		case !ref.hasValue && !r.Has("range"):
			return nil, fmt.Errorf("Refinement request for facet %s should specify range or value constraint.", name)
		case !ref.hasValue:
			rng, err := parseSearchRange(r.Msg("range"))
			if err != nil {
				return nil, err
			}
			ref.rng = rng
		}
		if f.refs[name] == nil {
			f.refineKeys = append(f.refineKeys, name)
		}
		f.refs[name] = append(f.refs[name], ref)
	}
	return f, nil
}

// refine keeps the results that satisfy the refinements.
func (f *searchFacetReq) refine(results []*searchResult) []*searchResult {
	if len(f.refineKeys) == 0 {
		return results
	}
	kept := results[:0]
	for _, r := range results {
		ok := true
		for _, name := range f.refineKeys {
			if !refinedBy(r.doc, name, f.refs[name]) {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, r)
		}
	}
	return kept
}

// refinedBy reports whether d has a facet name satisfying any of refs.
func refinedBy(d *searchDoc, name string, refs []searchRefinement) bool {
	for _, fc := range d.facets {
		if fc.name != name {
			continue
		}
		for _, ref := range refs {
			if ref.hasValue {
				if fc.atom && fc.str == ref.value {
					return true
				}
				if x, err := strconv.ParseFloat(ref.value, 64); !fc.atom && err == nil && x == fc.num {
					return true
				}
			} else if !fc.atom && ref.rng.has(fc.num) {
				return true
			}
		}
	}
	return false
}

// facetCount is one value of a facet result.
type facetCount struct {
	label string
	count int
	rng   *searchRange // a range refinement; nil: the label is the value
}

// facetTally counts the values of one facet.
type facetTally struct {
	name     string
	counts   map[string]*facetCount
	order    []string // labels in first-seen order
	min, max float64
	nums     int // number values, for the automatic range
	total    int
}

func newFacetTally(name string) *facetTally {
	return &facetTally{name: name, counts: make(map[string]*facetCount)}
}

func (t *facetTally) add(label string, n int, rng *searchRange) {
	c := t.counts[label]
	if c == nil {
		c = &facetCount{label: label, rng: rng}
		t.counts[label] = c
		t.order = append(t.order, label)
	}
	c.count += n
	t.total += n
}

func (t *facetTally) addNum(x float64) {
	if t.nums == 0 || x < t.min {
		t.min = x
	}
	if t.nums == 0 || x > t.max {
		t.max = x
	}
	t.nums++
	t.total++
}

// top returns the values with the highest counts, at most limit.
func (t *facetTally) top(limit int) []*facetCount {
	vals := make([]*facetCount, 0, len(t.order)+1)
	for _, l := range t.order {
		vals = append(vals, t.counts[l])
	}
	if t.nums > 0 {
		r := &searchRange{start: t.min, end: t.max, hasStart: true, hasEnd: true}
		vals = append(vals, &facetCount{label: r.label(), count: t.nums, rng: r})
	}
	sort.SliceStable(vals, func(i, j int) bool { return vals[i].count > vals[j].count })
	if len(vals) > limit {
		vals = vals[:limit]
	}
	return vals
}

// fill counts facets over the first depth results and writes the facet
// results: the facets asked for, in order, then the discovered ones.
func (f *searchFacetReq) fill(out pmsg, results []*searchResult) error {
	if len(f.asks) == 0 && f.discover == 0 {
		return nil
	}
	asked := make(map[string]*searchFacetAsk)
	tallies := make(map[string]*facetTally)
	for i := range f.asks {
		a := &f.asks[i]
		asked[a.name] = a
		t := newFacetTally(a.name)
		tallies[a.name] = t
		for _, v := range a.values {
			t.add(v, 0, nil)
		}
		for j := range a.ranges {
			t.add(a.labels[j], 0, &a.ranges[j])
		}
	}
	var found []string
	for _, r := range results[:min(f.depth, len(results))] {
		for _, fc := range r.doc.facets {
			a := asked[fc.name]
			t := tallies[fc.name]
			if a == nil && f.discover == 0 {
				continue
			}
			if t == nil {
				t = newFacetTally(fc.name)
				tallies[fc.name] = t
				found = append(found, fc.name)
			}
			switch {
			case a != nil && len(a.ranges) > 0:
				for j, rng := range a.ranges {
					if !fc.atom && rng.has(fc.num) {
						t.add(a.labels[j], 1, &a.ranges[j])
					}
				}
			case a != nil && len(a.values) > 0:
				for _, v := range a.values {
					x, err := strconv.ParseFloat(v, 64)
					if fc.atom && fc.str == v || !fc.atom && err == nil && x == fc.num {
						t.add(v, 1, nil)
					}
				}
			case fc.atom:
				t.add(fc.str, 1, nil)
			default:
				t.addNum(fc.num)
			}
		}
	}
	for _, a := range f.asks {
		writeFacetResult(out.AppendMsg("facet_result"), tallies[a.name], a.limit)
	}
	sort.SliceStable(found, func(i, j int) bool { return tallies[found[i]].total > tallies[found[j]].total })
	for _, name := range found[:min(f.discover, len(found))] {
		writeFacetResult(out.AppendMsg("facet_result"), tallies[name], f.valueLimit)
	}
	return nil
}

func writeFacetResult(fr pmsg, t *facetTally, limit int) {
	fr.Set("name", t.name)
	for _, c := range t.top(limit) {
		v := fr.AppendMsg("value")
		v.Set("name", c.label)
		v.Set("count", int64(c.count))
		ref := v.Mutable("refinement")
		ref.Set("name", t.name)
		if c.rng == nil {
			ref.Set("value", c.label)
			continue
		}
		rng := ref.Mutable("range")
		if c.rng.hasStart && !math.IsInf(c.rng.start, 0) {
			rng.Set("start", searchFormatNum(c.rng.start))
		}
		if c.rng.hasEnd && !math.IsInf(c.rng.end, 0) {
			rng.Set("end", searchFormatNum(c.rng.end))
		}
	}
}
