package aelocal

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// The query language of the Search API, parsed to production's grammar
// (the SDK's Query.g, which its QueryParser.py was generated from):
//
//	query      = WS* [expression WS*]
//	expression = sequence (WS+ "AND" WS+ sequence)*
//	sequence   = factor (WS+ factor)*            implicit AND
//	factor     = term (WS+ "OR" WS+ term)*
//	term       = primitive | ("NOT" WS+ | "-") primitive
//	primitive  = restriction | "(" WS* expression WS* ")"
//	restriction= comparable [WS* comparator WS* arg]
//	comparator = ":" | "=" | "!=" | "<" | "<=" | ">" | ">="
//	comparable = item | name "(" args ")"
//	item       = ["~" | "+"] (word | "\"" phrase "\"")
//
// so NOT binds tighter than OR, and OR tighter than AND. "field:(a OR b)"
// restricts every value inside the parentheses to the field.

// qop is the kind of a query node.
type qop int

const (
	qAnd      qop = iota // all kids
	qSeq                 // all kids, written side by side (see matchSeq)
	qOr                  // any kid
	qNot                 // not kids[0]
	qRestrict            // field (or every field) compared with a value
)

// qval is a value written in a query.
type qval struct {
	text   string   // without quotes and escapes
	phrase bool     // written in double quotes
	stem   bool     // written ~word: match words with the same stem
	terms  []string // text tokenized, as text and HTML fields are
	num    float64  // text as a number, if isNum
	day    float64  // text as a date, days since the epoch, if isDay
	isNum  bool
	isDay  bool
}

// qfn is a function written in a query: distance(...) or geopoint(...).
type qfn struct {
	name string
	args []qarg
}

// qarg is an argument of a query function: a field name, a value or a
// function.
type qarg struct {
	val qval
	fn  *qfn
}

// qnode is a node of a parsed query.
type qnode struct {
	op    qop
	kids  []*qnode
	field string // qRestrict: the field, "" for a global value
	fn    *qfn   // qRestrict: a function on the left, as distance(...)
	cmp   string // qRestrict: the comparator, ":" for a global value
	val   qval   // qRestrict: the value
}

// qtok is a token of the query lexer.
type qtok struct {
	kind byte // see the qt constants
	text string
	pos  int // rune offset, for errors
}

// Token kinds.
const (
	qtWS     = ' '
	qtLParen = '('
	qtRParen = ')'
	qtComma  = ','
	qtCmp    = '='
	qtText   = 'w'
	qtPhrase = '"'
	qtMinus  = '-'
	qtTilde  = '~'
	qtPlus   = '+'
	qtEOF    = 0
)

// qerr is a query the parser refuses.
type qerr struct{ msg string }

func (e *qerr) Error() string { return e.msg }

// qstop reports whether r ends a word.
func qstop(r rune) bool {
	switch r {
	case '(', ')', '"', ':', ',', '<', '>', '=':
		return true
	}
	return unicode.IsSpace(r)
}

// lexQuery splits a query into tokens.
func lexQuery(q string) ([]qtok, error) {
	rs := []rune(q)
	var toks []qtok
	for i := 0; i < len(rs); {
		r := rs[i]
		start := i
		switch {
		case unicode.IsSpace(r):
			for i < len(rs) && unicode.IsSpace(rs[i]) {
				i++
			}
			toks = append(toks, qtok{qtWS, " ", start})
			continue
		case r == '(' || r == ')' || r == ',':
			toks = append(toks, qtok{byte(r), string(r), i})
			i++
			continue
		case r == ':' || r == '=':
			toks = append(toks, qtok{qtCmp, string(r), i})
			i++
			continue
		case r == '<' || r == '>' || r == '!' && i+1 < len(rs) && rs[i+1] == '=':
			op := string(r)
			i++
			if i < len(rs) && rs[i] == '=' {
				op += "="
				i++
			}
			toks = append(toks, qtok{qtCmp, op, start})
			continue
		case r == '"':
			var b strings.Builder
			i++
			for ; i < len(rs) && rs[i] != '"'; i++ {
				if rs[i] == '\\' && i+1 < len(rs) {
					i++
				}
				b.WriteRune(rs[i])
			}
			if i >= len(rs) {
				return nil, &qerr{fmt.Sprintf("unterminated phrase at %d", start)}
			}
			i++
			toks = append(toks, qtok{qtPhrase, b.String(), start})
			continue
		case r == '-' && !(i+1 < len(rs) && unicode.IsDigit(rs[i+1])):
			toks = append(toks, qtok{qtMinus, "-", i})
			i++
			continue
		case r == '~' || r == '+':
			toks = append(toks, qtok{byte(r), string(r), i})
			i++
			continue
		}
		var b strings.Builder
		for i < len(rs) && !qstop(rs[i]) && !(rs[i] == '!' && i+1 < len(rs) && rs[i+1] == '=') {
			if rs[i] == '\\' && i+1 < len(rs) {
				i++
			}
			b.WriteRune(rs[i])
			i++
		}
		toks = append(toks, qtok{qtText, b.String(), start})
	}
	return append(toks, qtok{qtEOF, "", len(rs)}), nil
}

// qparser is a recursive-descent parser over the tokens.
type qparser struct {
	toks  []qtok
	i     int
	depth int // of parentheses and function calls
}

func (p *qparser) peek() qtok { return p.toks[p.i] }

// peekAfterWS returns the token after any whitespace, and its index.
func (p *qparser) peekAfterWS() (qtok, int) {
	j := p.i
	for p.toks[j].kind == qtWS {
		j++
	}
	return p.toks[j], j
}

func (p *qparser) skipWS() {
	for p.toks[p.i].kind == qtWS {
		p.i++
	}
}

func (p *qparser) fail(t qtok, what string) error {
	if t.kind == qtEOF {
		return &qerr{fmt.Sprintf("%s at the end of the query", what)}
	}
	return &qerr{fmt.Sprintf("%s at %d near %q", what, t.pos, t.text)}
}

// isKeyword reports whether t is the operator word kw.
func isKeyword(t qtok, kw string) bool { return t.kind == qtText && t.text == kw }

// parseSearchQuery parses a whole query; an empty one gives nil.
func parseSearchQuery(q string) (*qnode, error) {
	toks, err := lexQuery(q)
	if err != nil {
		return nil, err
	}
	p := &qparser{toks: toks}
	p.skipWS()
	if p.peek().kind == qtEOF {
		return nil, nil
	}
	n, err := p.expression()
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if t := p.peek(); t.kind != qtEOF {
		return nil, p.fail(t, "unexpected token")
	}
	return n, nil
}

func (p *qparser) expression() (*qnode, error) {
	return p.list(qAnd, "AND", p.sequence)
}

// list parses item (WS+ kw WS+ item)*, or the sequence with kw "".
func (p *qparser) list(op qop, kw string, item func() (*qnode, error)) (*qnode, error) {
	first, err := item()
	if err != nil {
		return nil, err
	}
	kids := []*qnode{first}
	for {
		t, j := p.peekAfterWS()
		if j == p.i || t.kind == qtEOF || t.kind == qtRParen {
			break // items are separated by whitespace
		}
		if kw == "" {
			if isKeyword(t, "AND") || isKeyword(t, "OR") {
				break
			}
			p.i = j
		} else {
			if !isKeyword(t, kw) || p.toks[j+1].kind != qtWS {
				break
			}
			p.i = j + 1
			p.skipWS()
		}
		n, err := item()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &qnode{op: op, kids: kids}, nil
}

func (p *qparser) sequence() (*qnode, error) { return p.list(qSeq, "", p.factor) }

func (p *qparser) factor() (*qnode, error) { return p.list(qOr, "OR", p.term) }

func (p *qparser) term() (*qnode, error) {
	t := p.peek()
	if t.kind == qtMinus || isKeyword(t, "NOT") && p.toks[p.i+1].kind == qtWS {
		p.i++
		if t.kind != qtMinus {
			p.skipWS()
		}
		n, err := p.primitive()
		if err != nil {
			return nil, err
		}
		return &qnode{op: qNot, kids: []*qnode{n}}, nil
	}
	return p.primitive()
}

func (p *qparser) primitive() (*qnode, error) {
	t := p.peek()
	if t.kind == qtLParen {
		return p.composite()
	}
	if isKeyword(t, "AND") || isKeyword(t, "OR") || isKeyword(t, "NOT") {
		return nil, p.fail(t, "misplaced operator")
	}
	lhs, err := p.comparable()
	if err != nil {
		return nil, err
	}
	if c, j := p.peekAfterWS(); c.kind == qtCmp {
		p.i = j + 1
		p.skipWS()
		return p.restriction(lhs, c)
	}
	if lhs.fn != nil {
		return nil, p.fail(t, "a function must be compared with a value")
	}
	return &qnode{op: qRestrict, cmp: ":", val: lhs.val}, nil
}

// searchMaxDepth bounds the nesting of parentheses in a query, so that a
// query of 2,000 parentheses costs no deep recursion.
const searchMaxDepth = 100

func (p *qparser) composite() (*qnode, error) {
	if p.depth++; p.depth > searchMaxDepth {
		return nil, &qerr{fmt.Sprintf("parentheses nest deeper than %d", searchMaxDepth)}
	}
	defer func() { p.depth-- }()
	p.i++ // (
	p.skipWS()
	n, err := p.expression()
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if t := p.peek(); t.kind != qtRParen {
		return nil, p.fail(t, "missing )")
	}
	p.i++
	return n, nil
}

// restriction parses what follows "lhs op".
func (p *qparser) restriction(lhs qarg, c qtok) (*qnode, error) {
	var field string
	if lhs.fn == nil {
		if lhs.val.phrase || lhs.val.stem {
			return nil, p.fail(c, "a field name must be a plain word")
		}
		field = lhs.val.text
		if c.text == ":" || c.text == "=" {
			if _, err := strconv.ParseFloat(field, 64); err == nil {
				return nil, &qerr{fmt.Sprintf("Invalid field name %q", field)}
			}
			if _, ok := searchParseDate(field); ok {
				return nil, &qerr{fmt.Sprintf("Invalid field name %q", field)}
			}
		}
	}
	if p.peek().kind == qtLParen {
		if lhs.fn != nil {
			return nil, p.fail(p.peek(), "a function must be compared with a value")
		}
		n, err := p.composite()
		if err != nil {
			return nil, err
		}
		return n, restrictTo(n, field, c.text)
	}
	rhs, err := p.comparable()
	if err != nil {
		return nil, err
	}
	if rhs.fn != nil {
		return nil, &qerr{fmt.Sprintf("Unable to compare %q with \"%s()\"", field, rhs.fn.name)}
	}
	return &qnode{op: qRestrict, field: field, fn: lhs.fn, cmp: c.text, val: rhs.val}, nil
}

// restrictTo makes the global values under n values of field, as
// "field:(a OR b)" means; a value already restricted to another field is an
// error, as in production.
func restrictTo(n *qnode, field, cmp string) error {
	if n.op != qRestrict {
		for _, k := range n.kids {
			if err := restrictTo(k, field, cmp); err != nil {
				return err
			}
		}
		return nil
	}
	if n.fn != nil {
		return &qerr{fmt.Sprintf("Restriction on %s and %s()", field, n.fn.name)}
	}
	if n.field == "" {
		n.field, n.cmp = field, cmp
		return nil
	}
	if n.field != field {
		return &qerr{fmt.Sprintf("Restriction on %s and %s", field, n.field)}
	}
	return nil
}

// comparable parses an item or a function call.
func (p *qparser) comparable() (qarg, error) {
	t := p.peek()
	var v qval
	switch t.kind {
	case qtTilde, qtPlus:
		p.i++
		n := p.peek()
		if n.kind != qtText && n.kind != qtPhrase {
			return qarg{}, p.fail(n, "a value must follow "+t.text)
		}
		v.stem = t.kind == qtTilde
		t = n
	case qtText, qtPhrase:
	default:
		return qarg{}, p.fail(t, "expected a value")
	}
	p.i++
	v.text, v.phrase = t.text, t.kind == qtPhrase
	v.terms = searchTokens(v.text)
	if x, err := strconv.ParseFloat(v.text, 64); err == nil {
		v.num, v.isNum = x, true
	}
	v.day, v.isDay = searchParseDate(v.text)
	if t.kind == qtText && !v.stem && p.peek().kind == qtLParen {
		return p.function(t)
	}
	return qarg{val: v}, nil
}

// function parses name(args) with name already read.
func (p *qparser) function(name qtok) (qarg, error) {
	switch name.text {
	case "distance", "geopoint":
	default:
		return qarg{}, &qerr{fmt.Sprintf("unknown function '%s'", name.text)}
	}
	if p.depth++; p.depth > searchMaxDepth {
		return qarg{}, &qerr{fmt.Sprintf("parentheses nest deeper than %d", searchMaxDepth)}
	}
	defer func() { p.depth-- }()
	p.i++ // (
	f := &qfn{name: name.text}
	p.skipWS()
	for p.peek().kind != qtRParen {
		if len(f.args) > 0 {
			if t := p.peek(); t.kind != qtComma {
				return qarg{}, p.fail(t, "expected , or )")
			}
			p.i++
			p.skipWS()
		}
		a, err := p.comparable()
		if err != nil {
			return qarg{}, err
		}
		f.args = append(f.args, a)
		p.skipWS()
	}
	p.i++ // )
	return qarg{fn: f}, nil
}

// String renders a parsed query in a canonical form, for tests and errors.
func (n *qnode) String() string {
	if n == nil {
		return "<all>"
	}
	switch n.op {
	case qAnd, qSeq, qOr:
		name := map[qop]string{qAnd: "AND", qSeq: "SEQ", qOr: "OR"}[n.op]
		parts := make([]string, len(n.kids))
		for i, k := range n.kids {
			parts[i] = k.String()
		}
		return "(" + name + " " + strings.Join(parts, " ") + ")"
	case qNot:
		return "(NOT " + n.kids[0].String() + ")"
	}
	lhs := n.field
	if n.fn != nil {
		lhs = n.fn.String()
	}
	if lhs == "" {
		lhs = "*"
	}
	return lhs + n.cmp + n.val.String()
}

func (v qval) String() string {
	s := v.text
	if v.phrase {
		s = strconv.Quote(s)
	}
	if v.stem {
		s = "~" + s
	}
	return s
}

func (f *qfn) String() string {
	parts := make([]string, len(f.args))
	for i, a := range f.args {
		if a.fn != nil {
			parts[i] = a.fn.String()
		} else {
			parts[i] = a.val.String()
		}
	}
	return f.name + "(" + strings.Join(parts, ",") + ")"
}
