package aelocal

import "strings"

// searchStem returns the Porter stem of an English word (M. F. Porter, "An
// algorithm for suffix stripping", 1980). A query value written "~word"
// matches every word of a text field with the same stem: production
// documents that "~cat" matches "cat" and "cats" and that the stemming is
// not exact. Words that are not plain lower-case ASCII letters are
// returned unchanged.
func searchStem(w string) string {
	if len(w) <= 2 {
		return w
	}
	for i := 0; i < len(w); i++ {
		if w[i] < 'a' || w[i] > 'z' {
			return w
		}
	}
	s := &porter{b: []byte(w)}
	s.step1ab()
	s.step1c()
	s.step2()
	s.step3()
	s.step4()
	s.step5()
	return string(s.b)
}

// porter holds the word being stemmed; j marks the end of the stem the
// current suffix test left (the offset just past it).
type porter struct {
	b []byte
	j int
}

// cons reports whether b[i] is a consonant.
func (p *porter) cons(i int) bool {
	switch p.b[i] {
	case 'a', 'e', 'i', 'o', 'u':
		return false
	case 'y':
		return i == 0 || !p.cons(i-1)
	}
	return true
}

// m counts the vowel-consonant sequences in b[:j].
func (p *porter) m() int {
	n, i := 0, 0
	for i < p.j && p.cons(i) {
		i++
	}
	for i < p.j {
		for i < p.j && !p.cons(i) {
			i++
		}
		if i >= p.j {
			break
		}
		n++
		for i < p.j && p.cons(i) {
			i++
		}
	}
	return n
}

// vowelInStem reports whether b[:j] holds a vowel.
func (p *porter) vowelInStem() bool {
	for i := 0; i < p.j; i++ {
		if !p.cons(i) {
			return true
		}
	}
	return false
}

// doubleC reports whether b[i-1:i+1] is a double consonant.
func (p *porter) doubleC(i int) bool {
	return i >= 1 && p.b[i] == p.b[i-1] && p.cons(i)
}

// cvc reports whether b[i-2:i+1] is consonant-vowel-consonant with the last
// not w, x or y (as in "hop", not "snow").
func (p *porter) cvc(i int) bool {
	if i < 2 || !p.cons(i) || p.cons(i-1) || !p.cons(i-2) {
		return false
	}
	switch p.b[i] {
	case 'w', 'x', 'y':
		return false
	}
	return true
}

// ends reports whether the word ends with suf, and sets j to the stem end.
func (p *porter) ends(suf string) bool {
	if !strings.HasSuffix(string(p.b), suf) {
		return false
	}
	p.j = len(p.b) - len(suf)
	return true
}

// setTo replaces the suffix after j by s.
func (p *porter) setTo(s string) { p.b = append(p.b[:p.j], s...) }

// r replaces the suffix by s when the stem has m > 0.
func (p *porter) r(s string) {
	if p.m() > 0 {
		p.setTo(s)
	}
}

func (p *porter) step1ab() {
	if p.b[len(p.b)-1] == 's' {
		switch {
		case p.ends("sses"):
			p.setTo("ss")
		case p.ends("ies"):
			p.setTo("i")
		case len(p.b) >= 2 && p.b[len(p.b)-2] != 's':
			p.b = p.b[:len(p.b)-1]
		}
	}
	if p.ends("eed") {
		if p.m() > 0 {
			p.b = p.b[:len(p.b)-1]
		}
		return
	}
	if !(p.ends("ed") || p.ends("ing")) || !p.vowelInStem() {
		return
	}
	p.b = p.b[:p.j]
	p.j = len(p.b)
	switch {
	case p.ends("at"), p.ends("bl"), p.ends("iz"):
		p.b = append(p.b, 'e')
	case p.doubleC(len(p.b) - 1):
		switch p.b[len(p.b)-1] {
		case 'l', 's', 'z':
		default:
			p.b = p.b[:len(p.b)-1]
		}
	default:
		p.j = len(p.b)
		if p.m() == 1 && p.cvc(len(p.b)-1) {
			p.b = append(p.b, 'e')
		}
	}
}

func (p *porter) step1c() {
	if p.ends("y") && p.vowelInStem() {
		p.b[len(p.b)-1] = 'i'
	}
}

// step2 maps double suffixes to single ones (-ization to -ize, ...).
func (p *porter) step2() {
	for _, r := range [][2]string{
		{"ational", "ate"}, {"tional", "tion"}, {"enci", "ence"}, {"anci", "ance"},
		{"izer", "ize"}, {"bli", "ble"}, {"alli", "al"}, {"entli", "ent"},
		{"eli", "e"}, {"ousli", "ous"}, {"ization", "ize"}, {"ation", "ate"},
		{"ator", "ate"}, {"alism", "al"}, {"iveness", "ive"}, {"fulness", "ful"},
		{"ousness", "ous"}, {"aliti", "al"}, {"iviti", "ive"}, {"biliti", "ble"},
		{"logi", "log"},
	} {
		if p.ends(r[0]) {
			p.r(r[1])
			return
		}
	}
}

// step3 deals with -ic-, -full, -ness and the like.
func (p *porter) step3() {
	for _, r := range [][2]string{
		{"icate", "ic"}, {"ative", ""}, {"alize", "al"}, {"iciti", "ic"},
		{"ical", "ic"}, {"ful", ""}, {"ness", ""},
	} {
		if p.ends(r[0]) {
			p.r(r[1])
			return
		}
	}
}

// step4 takes off -ant, -ence and the like when the stem is long enough.
func (p *porter) step4() {
	for _, suf := range []string{
		"al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement",
		"ment", "ent", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
	} {
		if !p.ends(suf) {
			continue
		}
		if suf == "ion" && (p.j == 0 || p.b[p.j-1] != 's' && p.b[p.j-1] != 't') {
			return
		}
		if p.m() > 1 {
			p.b = p.b[:p.j]
		}
		return
	}
}

// step5 removes a final -e and a double l where the stem allows.
func (p *porter) step5() {
	p.j = len(p.b)
	if p.b[len(p.b)-1] == 'e' {
		p.j = len(p.b) - 1
		if a := p.m(); a > 1 || a == 1 && !p.cvc(len(p.b)-2) {
			p.b = p.b[:len(p.b)-1]
		}
	}
	p.j = len(p.b)
	if p.b[len(p.b)-1] == 'l' && p.doubleC(len(p.b)-1) && p.m() > 1 {
		p.b = p.b[:len(p.b)-1]
	}
}
