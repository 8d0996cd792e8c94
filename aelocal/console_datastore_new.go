package aelocal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The form that creates an entity: its kind, parent and ID or name, and a
// few rows of properties, prefilled with the names and types of an
// existing entity of the kind.

// newEntityRows is how many empty property rows the form offers beyond
// the ones prefilled from an existing entity.
const newEntityRows = 3

// maxNewEntityRows bounds the rows a posted form may have.
const maxNewEntityRows = 200

type newPage struct {
	App, NS, Kind string
	Parent        string
	ID            string
	Rows          []newRow
	Types         []string
}

type newRow struct {
	Name, Type, Value string
	Indexed           bool
}

func (c *console) serveNew(w http.ResponseWriter, r *http.Request) {
	sp := c.appAndNamespace(r)
	q := r.URL.Query()
	d := &newPage{App: sp.app, NS: sp.ns, Kind: strings.TrimSpace(q.Get("kind")), Parent: q.Get("parent"), Types: valueTypes}
	if d.Kind != "" {
		// An existing entity tells which properties the kind has.
		res, _, err := c.runQuery(kindQuery(sp, d.Kind), 0, 1)
		if err == nil && len(res) == 1 {
			var seen []string
			for _, list := range []string{"property", "raw_property"} {
				for _, p := range res[0].Msgs(list) {
					name := p.Str("name")
					if slices.Contains(seen, name) {
						continue
					}
					seen = append(seen, name)
					typ := viewValue(p, sp).Type
					if typ == "entity" {
						continue
					}
					d.Rows = append(d.Rows, newRow{Name: name, Type: typ, Indexed: list == "property"})
				}
			}
			slices.SortFunc(d.Rows, func(a, b newRow) int { return strings.Compare(a.Name, b.Name) })
		}
	}
	for range newEntityRows {
		d.Rows = append(d.Rows, newRow{Type: "string", Indexed: true})
	}
	c.render(w, r, http.StatusOK, "new", &consolePage{Title: "New entity", Section: "Datastore", Data: d})
}

func (c *console) postNew(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	d := &newPage{
		App: f.Get("app"), NS: f.Get("ns"), Kind: strings.TrimSpace(f.Get("kind")),
		Parent: strings.TrimSpace(f.Get("parent")), ID: strings.TrimSpace(f.Get("id")), Types: valueTypes,
	}
	n, _ := strconv.Atoi(f.Get("rows"))
	n = min(max(n, 0), maxNewEntityRows)
	for i := range n {
		p := "p" + strconv.Itoa(i) + "."
		d.Rows = append(d.Rows, newRow{
			Name: strings.TrimSpace(f.Get(p + "name")), Type: f.Get(p + "type"),
			Value: f.Get(p + "value"), Indexed: f.Get(p+"indexed") != "",
		})
	}
	page := &consolePage{Title: "New entity", Section: "Datastore", Data: d}
	ep, err := d.entity()
	if err == nil {
		var out pmsg
		out, err = c.s.consoleCall("datastore_v3", "Put", func(in pmsg) { in.AppendMsg("entity").CopyFrom(ep) })
		if err == nil {
			redirect(w, r, "/datastore/entity", url.Values{"key": {encodeKey(out.Msgs("key")[0])}}, "created")
			return
		}
	}
	page.Error = err.Error()
	c.render(w, r, http.StatusBadRequest, "new", page)
}

// entity builds the EntityProto the form describes. Every mistake in the
// form is reported at once.
func (d *newPage) entity() (pmsg, error) {
	sp := nsKey{d.App, d.NS}
	var errs []error
	if sp.app == "" {
		errs = append(errs, errors.New("no app given"))
	}
	if d.Kind == "" {
		errs = append(errs, errors.New("a new entity needs a kind"))
	}
	var path dsPath
	if d.Parent != "" {
		pref, err := parseKeyText(d.Parent, sp)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("parent: %v", err))
		case pref.Str("app") != sp.app || pref.Str("name_space") != sp.ns:
			errs = append(errs, fmt.Errorf("parent: the key is in app %q namespace %q, not in this entity's app %q namespace %q",
				pref.Str("app"), pref.Str("name_space"), sp.app, sp.ns))
		default:
			path = refPath(pref)
		}
	}
	el := dsElem{kind: d.Kind}
	switch {
	case d.ID == "":
		// An automatic ID.
	case strings.HasPrefix(d.ID, `"`):
		name, err := strconv.Unquote(d.ID)
		if err != nil || name == "" {
			errs = append(errs, fmt.Errorf("key name %s: a quoted name must be one Go string literal, not empty", d.ID))
		}
		el.name = name
	default:
		if id, err := strconv.ParseInt(d.ID, 10, 64); err == nil {
			if id <= 0 {
				errs = append(errs, fmt.Errorf("ID %d: IDs are positive", id))
			}
			el.id = id
		} else {
			el.name = d.ID
		}
	}
	path = append(path, el)

	ep, err := newMsg("appengine.v2.EntityProto")
	if err != nil {
		return pmsg{}, err
	}
	writeRef(ep.Mutable("key"), sp.app, sp.ns, path)
	ep.Mutable("entity_group")
	counts := map[string]int{}
	for _, row := range d.Rows {
		if row.Name != "" && row.Value != "" {
			counts[row.Name]++
		}
	}
	for i, row := range d.Rows {
		if row.Name == "" {
			if strings.TrimSpace(row.Value) != "" {
				errs = append(errs, fmt.Errorf("row %d has a value but no property name", i+1))
			}
			continue
		}
		if row.Value == "" {
			// A prefilled row left empty, whatever its type: the form
			// offers the kind's null properties too, and nobody entered
			// one. A null is written as the word null.
			continue
		}
		p, err := buildProperty(row.Name, row.Type, row.Value, sp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Set("multiple", counts[row.Name] > 1)
		list := "property"
		if !row.Indexed || unindexedTypes[row.Type] {
			list = "raw_property"
		}
		ep.AppendMsg(list).CopyFrom(p)
	}
	if len(errs) > 0 {
		return pmsg{}, errors.Join(errs...)
	}
	return ep, nil
}
