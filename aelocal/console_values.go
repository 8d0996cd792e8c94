package aelocal

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Datastore values as the console shows them and reads them back: each
// value has a type name a person picks from a list, and a text form that
// parses back to the same value.

// Property meanings (appengine.v2.Property.Meaning) the console tells apart.
const (
	meaningNone       = 0
	meaningGDWhen     = 7
	meaningGeoPoint   = 9
	meaningBlob       = 14
	meaningText       = 15
	meaningByteString = 16
	meaningBlobKey    = 17
	meaningEntity     = 19
)

// meaningNames names the other meanings Python apps use, so that a value
// stored as, say, a link shows as "string (link)"; editing it keeps the
// meaning while its type stays the same.
var meaningNames = map[int64]string{
	1: "category", 2: "link", 3: "title", 4: "content", 5: "summary", 6: "author",
	8: "email", 10: "im", 11: "phone", 12: "postal address", 13: "rating",
}

// valueTypes are the types a person can give a value, in menu order.
var valueTypes = []string{"string", "text", "int", "float", "bool", "time", "key", "geopt", "bytes", "bytestring", "blobkey", "user", "null"}

// filterTypes are the types a filter value can have: the indexed ones.
var filterTypes = []string{"string", "int", "float", "bool", "time", "key", "geopt", "bytestring", "blobkey", "user", "null"}

// unindexedTypes can only be stored unindexed, as App Engine requires.
var unindexedTypes = map[string]bool{"text": true, "bytes": true, "entity": true}

// valueView is one property value as the console shows it.
type valueView struct {
	Type    string // one of valueTypes, or "entity"
	Meaning int64  // kept when an edit does not change the type
	Label   string // Type, with the meaning's name if it has one
	Text    string // the full value in the form its type parses, for editing
	Display string // the full value for reading (hex dump for binary)
	Short   string // one line, at most shortLen runes, for tables
	Key     string // for a key value, its encoded form, to link to it
	Mono    bool   // Display is a hex dump or other fixed-width text
}

const shortLen = 40

// maxDisplayBytes bounds how much of one binary value a page shows.
const maxDisplayBytes = 4096

// viewValue reads the value of Property p of an entity in sp.
func viewValue(p pmsg, sp nsKey) valueView {
	v := p.Msg("value")
	meaning := p.Int("meaning")
	var vv valueView
	switch {
	case v.Has("int64Value"):
		i := v.Int("int64Value")
		if meaning == meaningGDWhen {
			vv.Type = "time"
			vv.Text = timeFromMicros(i).Format(time.RFC3339Nano)
		} else {
			vv.Type = "int"
			vv.Text = strconv.FormatInt(i, 10)
		}
	case v.Has("booleanValue"):
		vv.Type, vv.Text = "bool", strconv.FormatBool(v.Bool("booleanValue"))
	case v.Has("doubleValue"):
		vv.Type, vv.Text = "float", strconv.FormatFloat(v.Float("doubleValue"), 'g', -1, 64)
	case v.Has("pointvalue"):
		pt := v.Msg("pointvalue")
		vv.Type = "geopt"
		vv.Text = strconv.FormatFloat(pt.Float("x"), 'g', -1, 64) + ", " + strconv.FormatFloat(pt.Float("y"), 'g', -1, 64)
	case v.Has("uservalue"):
		vv.Type, vv.Text = "user", v.Msg("uservalue").Str("email")
	case v.Has("referencevalue"):
		vv.Type = "key"
		ref := refFromValue(v.Msg("referencevalue"))
		path := refPath(ref)
		vv.Key = encodeKey(ref)
		vv.Text, vv.Display = pathText(path), pathText(path)
		other := nsKey{ref.Str("app"), ref.Str("name_space")}
		if other != sp {
			vv.Display += fmt.Sprintf(" (app %s, namespace %q)", other.app, other.ns)
		}
		// The path form reads back only in the entity's own app and
		// namespace, and only if the kinds allow it; else the encoded key.
		if back, err := parsePathText(vv.Text); other != sp || err != nil || comparePath(back, path) != 0 || len(back) != len(path) {
			vv.Text = vv.Key
		}
	case v.Has("stringValue"):
		s := v.Str("stringValue")
		switch meaning {
		case meaningText:
			vv.Type, vv.Text = "text", s
		case meaningBlob:
			vv.Type, vv.Text = "bytes", hex.EncodeToString([]byte(s))
		case meaningByteString:
			vv.Type, vv.Text = "bytestring", hex.EncodeToString([]byte(s))
		case meaningBlobKey:
			vv.Type, vv.Text = "blobkey", s
		case meaningEntity:
			vv.Type, vv.Text = "entity", hex.EncodeToString([]byte(s))
		default:
			vv.Type, vv.Text = "string", s
		}
		if vv.Type == "bytes" || vv.Type == "bytestring" || vv.Type == "entity" {
			vv.Display, vv.Mono = showBytes([]byte(s))
			vv.Short = shorten(strings.Join(strings.Fields(vv.Display), " "))
			if vv.Mono {
				vv.Short = shorten(hex.EncodeToString([]byte(s)))
			}
		}
	default:
		vv.Type, vv.Text = "null", ""
	}
	vv.Meaning = meaning
	vv.Label = vv.Type
	if n, ok := meaningNames[meaning]; ok {
		vv.Label += " (" + n + ")"
	}
	if vv.Display == "" {
		vv.Display = vv.Text
		if vv.Type == "null" {
			vv.Display = "null"
		}
	}
	if vv.Short == "" {
		vv.Short = shorten(vv.Display)
	}
	return vv
}

// showBytes returns b as text if it is printable UTF-8, else a hex dump,
// and whether it is a dump. Both are cut at maxDisplayBytes.
func showBytes(b []byte) (string, bool) {
	return showBytesN(b, maxDisplayBytes, true)
}

// showBytesN is showBytes cut at limit bytes, saying how many more there
// are if note is set.
func showBytesN(b []byte, limit int, note bool) (string, bool) {
	cut := ""
	if len(b) > limit {
		all := len(b)
		b = b[:limit]
		// A cut in the middle of a character would make text look binary.
		for i := 1; i < utf8.UTFMax && !utf8.Valid(b) && i < len(b); i++ {
			if utf8.Valid(b[:len(b)-i]) {
				b = b[:len(b)-i]
			}
		}
		if note {
			cut = fmt.Sprintf("\n... %d more bytes", all-len(b))
		}
	}
	if printable(b) {
		return string(b) + cut, false
	}
	return hex.Dump(b) + cut, true
}

// printable reports whether b reads as text: valid UTF-8 with no control
// characters but tabs and line breaks.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// shorten makes s one line of at most shortLen runes.
func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= shortLen {
		return s
	}
	r := []rune(s)
	return string(r[:shortLen-1]) + "…"
}

// timeFromMicros converts a GD_WHEN value.
func timeFromMicros(us int64) time.Time {
	return time.Unix(us/1e6, (us%1e6)*1e3).UTC()
}

// The range of times App Engine stores (the Go client refuses others).
var (
	consoleMinTime = time.Unix(int64(math.MinInt64)/1e6, (int64(math.MinInt64)%1e6)*1e3)
	consoleMaxTime = time.Unix(int64(math.MaxInt64)/1e6, (int64(math.MaxInt64)%1e6)*1e3)
)

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"}

// parseTypedValue reads text as a value of type typ into the empty
// PropertyValue v and returns the meaning the property needs. A key
// written as a path is in the app and namespace sp.
func parseTypedValue(typ, text string, v pmsg, sp nsKey) (meaning int64, err error) {
	t := strings.TrimSpace(text)
	switch typ {
	case "string":
		v.Set("stringValue", text)
	case "text":
		v.Set("stringValue", text)
		return meaningText, nil
	case "blobkey":
		v.Set("stringValue", t)
		return meaningBlobKey, nil
	case "int":
		i, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer (a whole number between %d and %d)", t, int64(math.MinInt64), int64(math.MaxInt64))
		}
		v.Set("int64Value", i)
	case "float":
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number (for example 3.25, -1e6, NaN or +Inf)", t)
		}
		v.Set("doubleValue", f)
	case "bool":
		b, err := strconv.ParseBool(t)
		if err != nil {
			return 0, fmt.Errorf("%q is not a boolean: use true or false", t)
		}
		v.Set("booleanValue", b)
	case "time":
		var tm time.Time
		for _, l := range timeLayouts {
			if tm, err = time.Parse(l, t); err == nil {
				break
			}
		}
		if err != nil {
			return 0, fmt.Errorf("%q is not a time: use RFC 3339, as 2024-05-06T07:08:09Z or 2024-05-06T09:08:09+02:00 (a time without a zone is UTC)", t)
		}
		if tm.Before(consoleMinTime) || tm.After(consoleMaxTime) {
			return 0, fmt.Errorf("time %s is out of the range the datastore stores", t)
		}
		v.Set("int64Value", tm.UnixMicro())
		return meaningGDWhen, nil
	case "geopt":
		lat, lng, ok := strings.Cut(t, ",")
		la, err1 := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		ln, err2 := strconv.ParseFloat(strings.TrimSpace(lng), 64)
		if !ok || err1 != nil || err2 != nil {
			return 0, fmt.Errorf("%q is not a geographical point: use latitude, longitude, as 47.5, 19.04", t)
		}
		if la < -90 || la > 90 || ln < -180 || ln > 180 || math.IsNaN(la) || math.IsNaN(ln) {
			return 0, fmt.Errorf("point %q is out of range: latitude must be within ±90, longitude within ±180", t)
		}
		pt := v.Mutable("pointvalue")
		pt.Set("x", la)
		pt.Set("y", ln)
		return meaningGeoPoint, nil
	case "bytes", "bytestring":
		b, err := hex.DecodeString(strings.Join(strings.Fields(t), ""))
		if err != nil {
			return 0, fmt.Errorf("the value of a %s property is written in hexadecimal (as 00ff7a, spaces allowed): %v", typ, err)
		}
		v.Set("stringValue", b)
		if typ == "bytes" {
			return meaningBlob, nil
		}
		return meaningByteString, nil
	case "user":
		if !strings.Contains(t, "@") {
			return 0, fmt.Errorf("%q is not an email address, which is what a user value holds", t)
		}
		u := v.Mutable("uservalue")
		u.Set("email", t)
		u.Set("auth_domain", "gmail.com")
	case "key":
		ref, err := parseKeyText(t, sp)
		if err != nil {
			return 0, err
		}
		r := v.Mutable("referencevalue")
		r.Set("app", ref.Str("app"))
		if ns := ref.Str("name_space"); ns != "" {
			r.Set("name_space", ns)
		}
		for _, e := range ref.Msg("path").Msgs("element") {
			pe := r.AppendMsg("pathelement")
			pe.Set("type", e.Str("type"))
			if e.Has("name") {
				pe.Set("name", e.Str("name"))
			} else {
				pe.Set("id", e.Int("id"))
			}
		}
	case "null":
		if t != "" && t != "null" {
			return 0, fmt.Errorf("a null value has no text: leave the value empty or write null, or pick another type")
		}
	case "entity":
		return 0, fmt.Errorf("embedded entities cannot be edited in the console")
	default:
		return 0, fmt.Errorf("unknown type %q", typ)
	}
	return meaningNone, nil
}

// guessType picks the type of text for a filter on a property no entity
// has: a number, a boolean or a time if it reads as one, else a string.
func guessType(text string) string {
	t := strings.TrimSpace(text)
	if _, err := strconv.ParseInt(t, 10, 64); err == nil {
		return "int"
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return "float"
	}
	if t == "true" || t == "false" {
		return "bool"
	}
	if _, err := time.Parse(time.RFC3339Nano, t); err == nil {
		return "time"
	}
	return "string"
}

// Keys.

// encodeKey encodes a Reference as appengine's Key.Encode does: the
// message in URL-safe base64 without padding, so that keys an app logs can
// be pasted into the console and back.
func encodeKey(ref pmsg) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ref.m.Interface())
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeKey reads an encoded key and checks that it is complete.
func decodeKey(s string) (pmsg, nsKey, dsPath, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pmsg{}, nsKey{}, nil, fmt.Errorf("%q is not an encoded key: such keys use only letters, digits, - and _. Copy the key from an entity's page, or as Key.Encode() writes it", shorten(s))
	}
	ref, err := newMsg("appengine.v2.Reference")
	if err != nil {
		return pmsg{}, nsKey{}, nil, err
	}
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, ref.m.Interface()); err != nil {
		// The decoder's own words (wire-format data) say nothing to
		// a person who pasted a key.
		return pmsg{}, nsKey{}, nil, fmt.Errorf("%q is not an encoded key: it does not decode to one. Copy the key from an entity's page, or as Key.Encode() writes it", shorten(s))
	}
	sp, path, err := parseKey(ref, "key", false)
	if err != nil {
		return pmsg{}, nsKey{}, nil, keyError(err)
	}
	return ref, sp, path, nil
}

// keyError turns a datastore error about a key into plain words.
func keyError(err error) error {
	if se, ok := err.(*serviceError); ok {
		return fmt.Errorf("%s", se.detail)
	}
	return err
}

// newRef builds a Reference.
func newRef(sp nsKey, path dsPath) pmsg {
	ref, _ := newMsg("appengine.v2.Reference")
	writeRef(ref, sp.app, sp.ns, path)
	return ref
}

// refPath returns the path of a Reference.
func refPath(ref pmsg) dsPath {
	els := ref.Msg("path").Msgs("element")
	path := make(dsPath, len(els))
	for i, e := range els {
		path[i] = dsElem{kind: e.Str("type"), id: e.Int("id"), name: e.Str("name")}
	}
	return path
}

// refFromValue converts a PropertyValue's ReferenceValue to a Reference.
func refFromValue(rv pmsg) pmsg {
	els := rv.Msgs("pathelement")
	path := make(dsPath, len(els))
	for i, e := range els {
		path[i] = dsElem{kind: e.Str("type"), id: e.Int("id"), name: e.Str("name")}
	}
	return newRef(nsKey{rv.Str("app"), rv.Str("name_space")}, path)
}

// parseKeyText reads a key typed by a person: an encoded key, or a path as
// the console shows one, /Kind,12/Kind,"name", in the app and namespace of
// sp.
func parseKeyText(t string, sp nsKey) (pmsg, error) {
	if !strings.Contains(t, ",") && !strings.HasPrefix(t, "/") {
		ref, _, _, err := decodeKey(t)
		return ref, err
	}
	path, err := parsePathText(t)
	if err != nil {
		return pmsg{}, err
	}
	return newRef(sp, path), nil
}

// pathText writes a key path as parsePathText reads it:
// /Kind,12/Kind,"name", names quoted as Go strings.
func pathText(p dsPath) string {
	var b strings.Builder
	for _, e := range p {
		b.WriteByte('/')
		b.WriteString(e.kind)
		b.WriteByte(',')
		if e.name != "" {
			b.WriteString(strconv.Quote(e.name))
		} else {
			b.WriteString(strconv.FormatInt(e.id, 10))
		}
	}
	return b.String()
}

// parsePathText reads /Kind,12/Kind,"name" (the leading slash optional).
func parsePathText(t string) (dsPath, error) {
	bad := func(why string) error {
		return fmt.Errorf("key %q: %s; write a key as Kind,12 or Kind,\"name\" elements joined by /, as /Parent,\"p\"/Child,7, or paste an encoded key", shorten(t), why)
	}
	rest := strings.TrimPrefix(strings.TrimSpace(t), "/")
	var path dsPath
	for rest != "" {
		kind, after, ok := strings.Cut(rest, ",")
		if k, _, _ := strings.Cut(rest, "/"); !ok || strings.Contains(kind, "/") {
			return nil, bad(fmt.Sprintf("element %q has no ID or name", k))
		}
		if kind == "" {
			return nil, bad("an element has no kind")
		}
		var el dsElem
		el.kind = kind
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return nil, bad("a quoted name does not end")
			}
			el.name, _ = strconv.Unquote(q)
			if el.name == "" {
				return nil, bad("a key name cannot be empty")
			}
			rest = after[len(q):]
		} else {
			idText, r, more := strings.Cut(after, "/")
			id, err := strconv.ParseInt(idText, 10, 64)
			if err != nil || id <= 0 {
				return nil, bad(fmt.Sprintf("%q is neither a positive ID nor a quoted name", idText))
			}
			el.id, rest = id, ""
			if more {
				rest = "/" + r
			}
		}
		path = append(path, el)
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, "/") {
			return nil, bad("elements must be joined by /")
		}
		rest = rest[1:]
		if rest == "" {
			return nil, bad("it ends with /")
		}
	}
	if len(path) == 0 {
		return nil, bad("it is empty")
	}
	return path, nil
}
