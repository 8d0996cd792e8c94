package aelocal

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Sort and field expressions ("Field expressions" in the Search API
// documentation): numbers, double-quoted strings, field names, _score and
// _rank, + - * / and unary minus, parentheses, and the functions abs,
// count, distance, geopoint, log, max, min, pow and snippet. Production's
// grammar also has comparisons and boolean operators, switch(), dot() and
// vector(); aelocal refuses those as a parse error.

// xnode is a node of a parsed expression.
type xnode struct {
	kind byte // 'n' number, 's' string, 'f' field name, 'c' call, 'o' operator, '-' negation
	num  float64
	str  string // string, field or function name, operator
	kids []*xnode
}

// xparser parses one expression.
type xparser struct {
	s     []rune
	i     int
	src   string
	depth int // of parentheses and calls, at most searchMaxDepth
}

func (p *xparser) fail() error {
	return &qerr{fmt.Sprintf("Failed to parse expression %q", p.src)}
}

func (p *xparser) ws() {
	for p.i < len(p.s) && unicode.IsSpace(p.s[p.i]) {
		p.i++
	}
}

func (p *xparser) peek() rune {
	p.ws()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// parseExpr parses a sort or field expression.
func parseExpr(src string) (*xnode, error) {
	if len(src) > searchMaxExprBytes {
		return nil, &qerr{fmt.Sprintf("expression must be under %d bytes", searchMaxExprBytes)}
	}
	p := &xparser{s: []rune(src), src: src}
	n, err := p.sum()
	if err != nil {
		return nil, err
	}
	if p.peek() != 0 {
		return nil, p.fail()
	}
	return n, nil
}

func (p *xparser) sum() (*xnode, error) {
	n, err := p.product()
	for err == nil && (p.peek() == '+' || p.peek() == '-') {
		op := string(p.s[p.i])
		p.i++
		var r *xnode
		if r, err = p.product(); err == nil {
			n = &xnode{kind: 'o', str: op, kids: []*xnode{n, r}}
		}
	}
	return n, err
}

func (p *xparser) product() (*xnode, error) {
	n, err := p.unary()
	for err == nil && (p.peek() == '*' || p.peek() == '/') {
		op := string(p.s[p.i])
		p.i++
		var r *xnode
		if r, err = p.unary(); err == nil {
			n = &xnode{kind: 'o', str: op, kids: []*xnode{n, r}}
		}
	}
	return n, err
}

func (p *xparser) unary() (*xnode, error) {
	if p.peek() == '-' {
		p.i++
		n, err := p.atom()
		return &xnode{kind: '-', kids: []*xnode{n}}, err
	}
	return p.atom()
}

func (p *xparser) atom() (*xnode, error) {
	if p.depth++; p.depth > searchMaxDepth {
		return nil, &qerr{fmt.Sprintf("expression nests deeper than %d", searchMaxDepth)}
	}
	defer func() { p.depth-- }()
	c := p.peek()
	switch {
	case c == '(':
		p.i++
		n, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.peek() != ')' {
			return nil, p.fail()
		}
		p.i++
		return n, nil
	case c == '"' || c == '\'':
		p.i++
		var b strings.Builder
		for ; p.i < len(p.s) && p.s[p.i] != c; p.i++ {
			if p.s[p.i] == '\\' && p.i+1 < len(p.s) {
				p.i++
			}
			b.WriteRune(p.s[p.i])
		}
		if p.i >= len(p.s) {
			return nil, p.fail()
		}
		p.i++
		return &xnode{kind: 's', str: b.String()}, nil
	case c >= '0' && c <= '9' || c == '.':
		start := p.i
		for p.i < len(p.s) && (unicode.IsDigit(p.s[p.i]) || p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E' ||
			(p.s[p.i] == '-' || p.s[p.i] == '+') && (p.s[p.i-1] == 'e' || p.s[p.i-1] == 'E')) {
			p.i++
		}
		x, err := strconv.ParseFloat(string(p.s[start:p.i]), 64)
		if err != nil {
			return nil, p.fail()
		}
		return &xnode{kind: 'n', num: x}, nil
	case c == '_' || c == '$' || unicode.IsLetter(c):
		start := p.i
		for p.i < len(p.s) && (p.s[p.i] == '_' || p.s[p.i] == '$' || unicode.IsLetter(p.s[p.i]) || unicode.IsDigit(p.s[p.i])) {
			p.i++
		}
		name := string(p.s[start:p.i])
		if p.peek() != '(' {
			return &xnode{kind: 'f', str: name}, nil
		}
		p.i++
		call := &xnode{kind: 'c', str: name}
		for p.peek() != ')' {
			if len(call.kids) > 0 {
				if p.peek() != ',' {
					return nil, p.fail()
				}
				p.i++
			}
			a, err := p.sum()
			if err != nil {
				return nil, err
			}
			call.kids = append(call.kids, a)
		}
		p.i++
		return call, checkCall(call, p)
	}
	return nil, p.fail()
}

// checkCall checks a function's name and arity.
func checkCall(c *xnode, p *xparser) error {
	arity := map[string][2]int{
		"abs": {1, 1}, "count": {1, 1}, "distance": {2, 2}, "geopoint": {2, 2},
		"log": {1, 1}, "max": {1, 1 << 20}, "min": {1, 1 << 20}, "pow": {2, 2}, "snippet": {2, 3},
	}
	a, ok := arity[c.str]
	if !ok || len(c.kids) < a[0] || len(c.kids) > a[1] {
		return p.fail()
	}
	if c.str == "count" && c.kids[0].kind != 'f' {
		return &qerr{"The argument to count() must be a simple field name"}
	}
	if c.str == "snippet" && c.kids[1].kind != 'f' {
		return p.fail()
	}
	return nil
}

// xval is the value of an expression for one document.
type xval struct {
	typ      int64 // sfText, sfHTML, sfAtom, sfNumber, sfDate (num in ms), sfGeo
	num      float64
	str      string
	lat, lng float64
}

// errNoValue means an expression has no value for a document (a field it
// names is missing, or a type does not fit); the sort default applies and
// a field expression is left out.
var errNoValue = fmt.Errorf("no value")

// xenv is what an expression sees of one result.
type xenv struct {
	r    *searchResult
	sort bool // a sort expression: count() and snippet() are refused
}

// eval evaluates n.
func (e *xenv) eval(n *xnode) (xval, error) {
	switch n.kind {
	case 'n':
		return xval{typ: sfNumber, num: n.num}, nil
	case 's':
		return xval{typ: sfText, str: n.str}, nil
	case 'f':
		switch n.str {
		case "_score":
			return xval{typ: sfNumber, num: e.r.score}, nil
		case "_rank":
			return xval{typ: sfNumber, num: float64(e.r.doc.rank)}, nil
		}
		for _, f := range e.r.doc.fields {
			if f.name == n.str {
				return xval{typ: f.typ, num: f.num, str: f.str, lat: f.lat, lng: f.lng}, nil
			}
		}
		return xval{}, errNoValue
	case '-':
		x, err := e.number(n.kids[0])
		return xval{typ: sfNumber, num: -x}, err
	case 'o':
		a, err := e.number(n.kids[0])
		if err != nil {
			return xval{}, err
		}
		b, err := e.number(n.kids[1])
		if err != nil {
			return xval{}, err
		}
		switch n.str {
		case "+":
			a += b
		case "-":
			a -= b
		case "*":
			a *= b
		case "/":
			a /= b
		}
		return xval{typ: sfNumber, num: a}, nil
	}
	return e.call(n)
}

// number evaluates n to a number; a date counts in milliseconds.
func (e *xenv) number(n *xnode) (float64, error) {
	v, err := e.eval(n)
	if err != nil {
		return 0, err
	}
	if v.typ != sfNumber && v.typ != sfDate {
		return 0, errNoValue
	}
	return v.num, nil
}

func (e *xenv) call(n *xnode) (xval, error) {
	num := func(x float64) (xval, error) { return xval{typ: sfNumber, num: x}, nil }
	switch n.str {
	case "count":
		if e.sort {
			return xval{}, &qerr{fmt.Sprintf("Failed to parse sort expression 'count(%s)': count() is not supported in sort expressions", n.kids[0].str)}
		}
		c := 0
		for _, f := range e.r.doc.fields {
			if f.name == n.kids[0].str {
				c++
			}
		}
		return num(float64(c))
	case "snippet":
		if e.sort {
			return xval{}, &qerr{"Failed to parse sort expression: snippet() is not supported in sort expressions"}
		}
		return e.snippet(n)
	case "geopoint":
		lat, err := e.number(n.kids[0])
		if err != nil {
			return xval{}, err
		}
		lng, err := e.number(n.kids[1])
		return xval{typ: sfGeo, lat: lat, lng: lng}, err
	case "distance":
		a, err := e.eval(n.kids[0])
		if err != nil {
			return xval{}, err
		}
		b, err := e.eval(n.kids[1])
		if err != nil || a.typ != sfGeo || b.typ != sfGeo {
			return xval{}, errNoValue
		}
		return num(searchDistance(a.lat, a.lng, b.lat, b.lng))
	}
	args := make([]float64, len(n.kids))
	for i, k := range n.kids {
		x, err := e.number(k)
		if err != nil {
			return xval{}, err
		}
		args[i] = x
	}
	switch n.str {
	case "abs":
		return num(math.Abs(args[0]))
	case "log":
		return num(math.Log(args[0]))
	case "pow":
		return num(math.Pow(args[0], args[1]))
	case "max", "min":
		x := args[0]
		for _, a := range args[1:] {
			if n.str == "max" {
				x = math.Max(x, a)
			} else {
				x = math.Min(x, a)
			}
		}
		return num(x)
	}
	return xval{}, errNoValue
}

// searchSnippetChars is production's default snippet length.
const searchSnippetChars = 160

// snippet evaluates snippet(query, field[, max_chars]): HTML with the
// words of the query in bold, around their first occurrence, with "..."
// where the text is cut.
func (e *xenv) snippet(n *xnode) (xval, error) {
	q, err := e.eval(n.kids[0])
	if err != nil {
		return xval{}, err
	}
	limit := searchSnippetChars
	if len(n.kids) == 3 {
		x, err := e.number(n.kids[2])
		if err != nil {
			return xval{}, err
		}
		// A length below one word (or NaN) or past a field's size means
		// the shortest or the whole snippet.
		switch {
		case !(x > 0):
			limit = 0
		case x > searchMaxTextBytes:
			limit = searchMaxTextBytes
		default:
			limit = int(x)
		}
	}
	terms := map[string]bool{}
	for _, w := range strings.Fields(q.str) {
		if w == "AND" || w == "OR" || w == "NOT" {
			continue
		}
		for _, t := range searchTokens(w) {
			terms[t] = true
		}
	}
	var f *searchField
	for i := range e.r.doc.fields {
		g := &e.r.doc.fields[i]
		if g.name == n.kids[1].str {
			if g.typ == sfNumber || g.typ == sfDate || g.typ == sfGeo {
				return xval{}, &qerr{fmt.Sprintf("Failed to parse field expression 'snippet(...)': snippet() argument 2 must be text (field %s)", g.name)}
			}
			f = g
			break
		}
	}
	if f == nil {
		return xval{}, errNoValue
	}
	text, words := f.text, f.words
	if f.typ == sfAtom {
		text, words = f.str, searchWords(f.str)
	}
	hit := -1
	for i, w := range words {
		if terms[w.norm] {
			hit = i
			break
		}
	}
	if hit < 0 {
		cut := searchCut(text, limit)
		s := html.EscapeString(cut)
		if len(cut) < len(text) {
			s += "..."
		}
		return xval{typ: sfHTML, str: s}, nil
	}
	lo, hi := hit, hit
	for {
		grown := false
		if hi+1 < len(words) && words[hi+1].end-words[lo].start <= limit {
			hi++
			grown = true
		}
		if lo > 0 && words[hi].end-words[lo-1].start <= limit {
			lo--
			grown = true
		}
		if !grown {
			break
		}
	}
	var b strings.Builder
	if lo > 0 {
		b.WriteString("...")
	}
	at := words[lo].start
	for _, w := range words[lo : hi+1] {
		b.WriteString(html.EscapeString(text[at:w.start]))
		if terms[w.norm] {
			b.WriteString("<b>" + html.EscapeString(text[w.start:w.end]) + "</b>")
		} else {
			b.WriteString(html.EscapeString(text[w.start:w.end]))
		}
		at = w.end
	}
	if hi < len(words)-1 {
		b.WriteString("...")
	}
	return xval{typ: sfHTML, str: b.String()}, nil
}

// searchCut returns at most max bytes of s, cut at a rune boundary.
func searchCut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
