package aelocal

import (
	"bytes"
	"html"
	"strings"
	"unicode"
)

// Tokenizing text and HTML fields, and the text values of a query, the way
// production documents it ("Tokenizing string fields"): words break at
// whitespace and punctuation; the underscore and the ampersand do not
// break a word; "I.B.M." is the one token "ibm"; a hash sign or plus
// signs that end a word stay with it ("c#", "c++"), as does a leading hash
// ("#google"); an apostrophe inside a word stays ("john's"). Matching is
// case-insensitive and ignores accents. Markup inside an HTML field is not
// searchable. The Python stub splits at fewer characters (not at "-" or
// "_"); production's documented rules win.

// searchWord is one token of a field or query text: its normalized form and
// where it came from in the (tag-stripped) text, for snippets.
type searchWord struct {
	norm       string
	start, end int // byte offsets in the text that was tokenized
}

// searchTokens returns the normalized tokens of s.
func searchTokens(s string) []string {
	ws := searchWords(s)
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.norm
	}
	return out
}

// searchStripHTML replaces the markup of an HTML value by spaces and
// resolves its character references, leaving the text a reader sees.
func searchStripHTML(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		b.WriteByte(' ')
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		s = s[i+j+1:]
	}
	return html.UnescapeString(b.String())
}

// searchWordRune reports whether r may be part of a raw word, before the
// rules for periods, apostrophes, hashes and plus signs apply.
func searchWordRune(r rune) bool {
	switch r {
	case '_', '&', '\'', '.', '#', '+':
		return true
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// searchWords splits s into normalized words with their positions.
func searchWords(s string) []searchWord {
	var out []searchWord
	start := -1
	flush := func(end int) {
		if start >= 0 {
			out = searchCleanWord(out, s[start:end], start)
			start = -1
		}
	}
	for i, r := range s {
		if searchWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
	}
	flush(len(s))
	return out
}

// searchCleanWord applies the rules for the special characters a raw word
// may hold and appends the tokens it makes.
func searchCleanWord(out []searchWord, raw string, off int) []searchWord {
	// Apostrophes and periods at the ends never belong to the word.
	lead := len(raw) - len(strings.TrimLeft(raw, "'."))
	raw = strings.TrimLeft(raw, "'.")
	raw = strings.TrimRight(raw, "'.")
	off += lead
	if raw == "" {
		return out
	}
	if strings.Contains(raw, ".") {
		if searchAcronym(raw) {
			return append(out, searchWord{norm: searchNormalize(strings.ReplaceAll(raw, ".", "")), start: off, end: off + len(raw)})
		}
		if !searchNumberLike(raw) {
			for _, part := range searchSplitKeep(raw, '.') {
				out = searchCleanWord(out, part.s, off+part.off)
			}
			return out
		}
	}
	// A plus or hash sign belongs to the word only at its end (c++, c#),
	// and a hash also at its start (#google).
	core := strings.TrimRight(raw, "+#")
	tail := raw[len(core):]
	head := ""
	if strings.HasPrefix(core, "#") {
		head = "#"
		core = strings.TrimLeft(core, "#")
	}
	if strings.ContainsAny(core, "+#") {
		parts := searchSplitKeep(core, '+', '#')
		for i, part := range parts {
			p := part.s
			if i == 0 {
				p = head + p
			}
			if i == len(parts)-1 {
				p += tail
			}
			out = searchCleanWord(out, p, off+part.off)
		}
		return out
	}
	if core == "" {
		return out // only signs: no word
	}
	word := head + core + tail
	if strings.Trim(word, "_&'") == "" {
		return out
	}
	return append(out, searchWord{norm: searchNormalize(word), start: off, end: off + len(raw)})
}

type searchPart struct {
	s   string
	off int
}

// searchSplitKeep splits s at any of seps, keeping each part's offset.
func searchSplitKeep(s string, seps ...byte) []searchPart {
	var parts []searchPart
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || bytes.IndexByte(seps, s[i]) >= 0 {
			if i > start {
				parts = append(parts, searchPart{s[start:i], start})
			}
			start = i + 1
		}
	}
	return parts
}

// searchAcronym reports whether w is single letters each followed by a
// period, as "i.b.m" (the trailing period is already trimmed).
func searchAcronym(w string) bool {
	rs := []rune(w)
	if len(rs) < 3 {
		return false
	}
	for i, r := range rs {
		if i%2 == 0 && !unicode.IsLetter(r) || i%2 == 1 && r != '.' {
			return false
		}
	}
	return len(rs)%2 == 1
}

// searchNumberLike reports whether w is digits and periods, as "3.14".
func searchNumberLike(w string) bool {
	for _, r := range w {
		if r != '.' && !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// searchNormalize lowers the case of w and removes its accents. A word
// that is already lower-case ASCII is returned as it is, sharing the
// field's text.
func searchNormalize(w string) string {
	plain := true
	for i := 0; i < len(w); i++ {
		if c := w[i]; c >= 0x80 || c >= 'A' && c <= 'Z' {
			plain = false
			break
		}
	}
	if plain {
		return w
	}
	var b strings.Builder
	for _, r := range w {
		if unicode.IsMark(r) {
			continue
		}
		r = unicode.ToLower(r)
		if f, ok := searchFold[r]; ok {
			b.WriteRune(f)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// searchFold maps the precomposed Latin letters whose compatibility
// decomposition is a base letter and accents to that letter, which is what
// production's accent removal (NFKD, then dropping the marks) does to them.
// aelocal has no Unicode normalization tables (no golang.org/x/text
// dependency); letters outside Latin-1 and Latin Extended-A keep their
// accents, and combining marks are always dropped.
var searchFold = func() map[rune]rune {
	m := make(map[rune]rune)
	for base, letters := range map[rune]string{
		'a': "àáâãäåāăą", 'c': "çćĉċč", 'd': "ď", 'e': "èéêëēĕėęě",
		'g': "ĝğġģ", 'h': "ĥ", 'i': "ìíîïĩīĭįİ", 'j': "ĵ", 'k': "ķ",
		'l': "ĺļľ", 'n': "ñńņň", 'o': "òóôõöōŏő", 'r': "ŕŗř",
		's': "śŝşš", 't': "ţť", 'u': "ùúûüũūŭůűų", 'w': "ŵ",
		'y': "ýÿŷ", 'z': "źżž",
	} {
		for _, r := range letters {
			m[r] = base
		}
	}
	return m
}()

// searchAtomNorm is how an atom value compares: whole, case-insensitive.
func searchAtomNorm(s string) string { return strings.ToLower(s) }
