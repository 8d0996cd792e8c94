package aelocal

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// Field and facet content types (FieldValue.ContentType, FacetValue.ContentType).
const (
	sfText   = 0
	sfHTML   = 1
	sfAtom   = 2
	sfDate   = 3
	sfNumber = 4
	sfGeo    = 5
)

// Production's limits on documents (the SDK's search.py and the Search API
// documentation).
const (
	searchMaxDocBytes      = 1 << 20    // a document, encoded
	searchMaxTextBytes     = 1 << 20    // a text or HTML field
	searchMaxAtomBytes     = 500        // an atom field or facet value
	searchMaxNameBytes     = 500        // a field or facet name
	searchMaxIDBytes       = 500        // a document ID
	searchMaxIndexName     = 100        // an index name
	searchMaxNumber        = 2147483647 // |number| of a number field
	searchMaxDocsPerCall   = 200        // documents per IndexDocument or DeleteDocument
	searchMaxQueryBytes    = 2000       // a query string
	searchMaxExprBytes     = 5000       // a sort or field expression
	searchMaxLimit         = 1000       // results per Search or ListDocuments
	searchMaxOffset        = 1000       // a search's offset
	searchMaxSortLimit     = 10000      // documents scored or sorted
	searchMaxCountAccuracy = 25000      // matched_count_accuracy
	searchMaxReturnFields  = 100        // field names in field_spec (Go SearchOptions.Fields)
	searchMaxFacetDepth    = 10000      // documents a faceted search looks at
	searchMaxFacets        = 100        // facets and values per facet returned
)

var searchFieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// searchField is one field of a stored document, decoded for matching.
type searchField struct {
	name     string
	typ      int64
	str      string       // the string value: text, HTML, atom; for HTML the markup
	num      float64      // number; for a date, milliseconds since the epoch
	lat, lng float64      // geo
	words    []searchWord // text and HTML: the tokens, over text (below)
	text     string       // text: str; HTML: str without markup (what snippets show)
}

// searchFacet is one facet of a stored document.
type searchFacet struct {
	name string
	atom bool
	str  string // the value as sent
	num  float64
}

// searchDoc is a stored document: the message as the app sent it (its ID
// filled in), and its decoded fields.
type searchDoc struct {
	id     string
	pb     pmsg // search.v2.Document
	fields []searchField
	facets []searchFacet
	rank   int64
	cost   int // bytes charged against the server's search budget
}

// searchDocCost is what a document charges against the budget: its encoded
// size, what its tokens and decoded fields hold, and a fixed overhead.
func searchDocCost(d *searchDoc) int {
	n := 2*d.pb.Size() + 256
	for _, f := range d.fields {
		n += 64 + len(f.str) + len(f.text) + 40*len(f.words)
	}
	return n + 48*len(d.facets)
}

// searchValidName checks an index name or document ID: visible printable
// ASCII, not starting with "!", at most max bytes.
func searchValidName(kind, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s must not be empty", kind)
	}
	if len(s) > max {
		return fmt.Errorf("%s must be under %d bytes", kind, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("%s must be visible printable ASCII: %q", kind, s)
		}
	}
	if s[0] == '!' {
		return fmt.Errorf("%s must not start with \"!\": %q", kind, s)
	}
	return nil
}

// searchValidFieldName checks a field or facet name.
func searchValidFieldName(name string) error {
	if len(name) > searchMaxNameBytes {
		return fmt.Errorf("field name must be under %d bytes", searchMaxNameBytes)
	}
	if !searchFieldName.MatchString(name) {
		return fmt.Errorf("field name %q should match pattern: %s", name, searchFieldName)
	}
	return nil
}

// searchValidLanguage checks a language code as the SDK does: two or
// three characters, or two, an underscore and two.
func searchValidLanguage(l string) bool {
	return len(l) == 2 || len(l) == 3 || len(l) == 5 && l[2] == '_'
}

// decodeSearchDoc checks a document the app sent and decodes it. The error
// is the detail of an INVALID_REQUEST status for this document.
func decodeSearchDoc(pb pmsg) (*searchDoc, error) {
	d := &searchDoc{id: pb.Str("id"), pb: pb, rank: pb.Int("order_id")}
	if pb.Has("id") {
		if err := searchValidName("doc_id", d.id, searchMaxIDBytes); err != nil {
			return nil, err
		}
	}
	if pb.Has("language") && !searchValidLanguage(pb.Str("language")) {
		return nil, fmt.Errorf("invalid language %s. Languages should be two letters.", pb.Str("language"))
	}
	if d.rank < 0 {
		return nil, fmt.Errorf("rank must be non-negative, got %d", d.rank)
	}
	fields := pb.Msgs("field")
	if len(fields) == 0 {
		// The SDK stub refuses a document without fields.
		return nil, fmt.Errorf("Empty list of fields in document for indexing")
	}
	single := map[[2]any]bool{}
	for _, f := range fields {
		sf, err := decodeSearchField(f)
		if err != nil {
			return nil, err
		}
		if sf.typ == sfNumber || sf.typ == sfDate {
			k := [2]any{sf.name, sf.typ}
			if single[k] {
				return nil, fmt.Errorf("Invalid document %s: field %s with type date or number may not be repeated.", d.id, sf.name)
			}
			single[k] = true
		}
		d.fields = append(d.fields, sf)
	}
	for _, f := range pb.Msgs("facet") {
		sf, err := decodeSearchFacet(f)
		if err != nil {
			return nil, err
		}
		d.facets = append(d.facets, sf)
	}
	if size := pb.Size(); size > searchMaxDocBytes {
		return nil, fmt.Errorf("document is %d bytes; the maximum is %d", size, searchMaxDocBytes)
	}
	return d, nil
}

func decodeSearchField(f pmsg) (searchField, error) {
	name := f.Str("name")
	if err := searchValidFieldName(name); err != nil {
		return searchField{}, err
	}
	v := f.Msg("value")
	sf := searchField{name: name, typ: v.Int("type"), str: v.Str("string_value")}
	if v.Has("language") && !searchValidLanguage(v.Str("language")) {
		return sf, fmt.Errorf("invalid language %s. Languages should be two letters.", v.Str("language"))
	}
	if !utf8.ValidString(sf.str) {
		return sf, fmt.Errorf("field %s is not valid UTF-8", name)
	}
	switch sf.typ {
	case sfText, sfHTML:
		if len(sf.str) > searchMaxTextBytes {
			return sf, fmt.Errorf("Field %s is %d bytes; text and HTML fields must be under %d bytes", name, len(sf.str), searchMaxTextBytes)
		}
		sf.text = sf.str
		if sf.typ == sfHTML {
			sf.text = searchStripHTML(sf.str)
		}
		sf.words = searchWords(sf.text)
	case sfAtom:
		if len(sf.str) > searchMaxAtomBytes {
			return sf, fmt.Errorf("Field %s is %d bytes; atom fields must be under %d bytes", name, len(sf.str), searchMaxAtomBytes)
		}
	case sfNumber:
		x, err := strconv.ParseFloat(sf.str, 64)
		if err != nil || math.IsNaN(x) || math.Abs(x) > searchMaxNumber {
			return sf, fmt.Errorf("Failed to parse numeric value %q of field %s: values must be between %d and %d", sf.str, name, -searchMaxNumber, searchMaxNumber)
		}
		sf.num = x
	case sfDate:
		ms, err := strconv.ParseInt(sf.str, 10, 64)
		if err != nil {
			return sf, fmt.Errorf("Failed to parse date value %q of field %s", sf.str, name)
		}
		sf.num = float64(ms)
	case sfGeo:
		g := v.Msg("geo")
		sf.lat, sf.lng = g.Float("lat"), g.Float("lng")
		if !v.Has("geo") || math.IsNaN(sf.lat) || math.IsNaN(sf.lng) || math.Abs(sf.lat) > 90 || math.Abs(sf.lng) > 180 {
			return sf, fmt.Errorf("Invalid geo value of field %s: latitude must be in [-90, 90] and longitude in [-180, 180]", name)
		}
	default:
		return sf, fmt.Errorf("Field %s has an unsupported type %d", name, sf.typ)
	}
	return sf, nil
}

func decodeSearchFacet(f pmsg) (searchFacet, error) {
	name := f.Str("name")
	if err := searchValidFieldName(name); err != nil {
		return searchFacet{}, err
	}
	v := f.Msg("value")
	sf := searchFacet{name: name, atom: v.Int("type") != sfNumber, str: v.Str("string_value")}
	if sf.str == "" {
		return sf, fmt.Errorf("Facet value is empty")
	}
	if !sf.atom {
		x, err := strconv.ParseFloat(sf.str, 64)
		if err != nil || math.IsNaN(x) || math.Abs(x) > searchMaxNumber {
			return sf, fmt.Errorf("Failed to parse numeric value %q of facet %s", sf.str, name)
		}
		sf.num = x
	} else if v.Int("type") != sfAtom {
		return sf, fmt.Errorf("Facet %s has an unsupported type %d", name, v.Int("type"))
	} else if len(sf.str) > searchMaxAtomBytes || !utf8.ValidString(sf.str) {
		return sf, fmt.Errorf("Facet %s must be valid UTF-8 under %d bytes", name, searchMaxAtomBytes)
	}
	return sf, nil
}

// searchDefaultRank is the rank production gives a document sent without
// one: the seconds since 1 January 2011.
func searchDefaultRank(now time.Time) int64 {
	return int64(now.Sub(time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC)).Seconds())
}

// searchMsPerDay converts date fields to the days a query compares.
const searchMsPerDay = 86400000

// searchDays is the day since the epoch a date field's milliseconds fall on.
func searchDays(ms float64) float64 { return math.Floor(ms / searchMsPerDay) }

// searchParseDate parses a query's date, yyyy-mm-dd, to days since the epoch.
func searchParseDate(s string) (float64, bool) {
	t, err := time.Parse("2006-1-2", s)
	if err != nil {
		return 0, false
	}
	return searchDays(float64(t.UnixMilli())), true
}
