package aelocal

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversion between the Cloud Datastore API's messages (google.datastore.v1)
// and the datastore_v3 messages the engine stores, as production converts
// them: the rules are those of Google's own converter in the Python SDK
// (appengine-python-standard, datastore_pbs.py, _EntityConverter), which
// its Cloud Datastore v1 stub uses to forward every call to datastore_v3.
//
//   - A project ID is the app ID without its partition prefix ("s~", "e~",
//     "dev~"); see cloudResolver.
//   - A value excluded from indexes is a raw_property, any other a property.
//   - Strings and blobs are both stringValue: a v1 blob becomes BLOB
//     (unindexed) or BYTESTRING (indexed); a v3 string that is not UTF-8
//     comes back as a blob. TEXT and other meanings travel in Value.meaning.
//   - A time is an int64 of microseconds with meaning GD_WHEN; a v1
//     timestamp loses its nanoseconds below the microsecond, as production
//     stores it.
//   - A geo point is a pointvalue with meaning GEORSS_POINT.
//   - An embedded entity is an EntityProto serialized into stringValue with
//     meaning ENTITY_PROTO.
//   - An array is one property per element with multiple set; an empty
//     array is a single property of meaning EMPTY_LIST (24).
//   - A null is a PropertyValue with nothing set.

// Property.Meaning values the conversion uses besides those of
// console_values.go and datastore_projection.go (meaningGDWhen,
// meaningBlob, ...): EMPTY_LIST and the v1-only meanings are
// datastore_pbs.py's.
const (
	meaningNonRFC3339   = 7  // v1 meaning of an integer that was a time out of RFC 3339's range
	meaningUser         = 20 // v1 only: a user value as an entity
	meaningZlib         = 22
	meaningPointNoV3    = 23 // v1 only: a point that had no GEORSS_POINT meaning
	meaningEmptyList    = 24
	uriMeaningZlib      = "ZLIB"
	rfc3339MinMicros    = -62135596800 * 1000000
	rfc3339MaxMicros    = 253402300799999999
	cloudKeyPartDefault = "" // the default database
)

// projectOf is the Cloud project ID of an app ID: the ID without its
// partition prefix, as datastore_pbs.IdResolver.resolve_project_id.
func projectOf(app string) string {
	if i := strings.LastIndexByte(app, '~'); i >= 0 {
		return app[i+1:]
	}
	return app
}

// appForProject is the app ID whose data a Cloud API request for project
// reads and writes: the server's own app (GAE_APPLICATION when it
// started) if it is that project's, else an app the datastore already
// holds for that project (the first by name), else "dev~"+project, the
// app ID dev_appserver and the Python SDK's v1 stub give a project they
// do not know.
func (s *Server) appForProject(project string) (string, error) {
	if project == "" {
		return "", badRequest("the request names no project ID (set DATASTORE_PROJECT_ID)")
	}
	if strings.ContainsRune(project, '~') {
		return "", badRequest("invalid project ID %q: a project ID has no '~' (the app ID %q is the project %q)", project, project, projectOf(project))
	}
	if own := s.cloudApp; own != "" && projectOf(own) == project {
		return own, nil
	}
	d := s.datastore
	var known []string
	d.mu.Lock()
	for sp := range d.spaces {
		if projectOf(sp.app) == project {
			known = append(known, sp.app)
		}
	}
	for _, m := range []map[string]int64{d.nextID, d.nextScat} {
		for app := range m {
			if projectOf(app) == project {
				known = append(known, app)
			}
		}
	}
	d.mu.Unlock()
	if len(known) > 0 {
		sort.Strings(known)
		return known[0], nil
	}
	return "dev~" + project, nil
}

// cloudScope is what one Cloud API request converts keys against: its
// project's app ID, and the project itself.
type cloudScope struct {
	project string
	app     string
}

// newCloudScope resolves the project and database of a request.
func (s *Server) newCloudScope(project, database string) (*cloudScope, error) {
	if database != cloudKeyPartDefault {
		return nil, badRequest("aelocal serves only the default database, not %q", database)
	}
	app, err := s.appForProject(project)
	if err != nil {
		return nil, err
	}
	return &cloudScope{project: project, app: app}, nil
}

// key converts a v1 key. A key without a project ID is in the request's
// project, as the Cloud client sends them; one in another project is
// refused, as production refuses it.
func (c *cloudScope) key(k *pb.Key, what string, allowIncomplete bool) (nsKey, dsPath, error) {
	if k == nil {
		return nsKey{}, nil, badRequest("%s is missing", what)
	}
	pid := k.GetPartitionId()
	if p := pid.GetProjectId(); p != "" && p != c.project {
		return nsKey{}, nil, badRequest("%s is in project %q, the request in %q", what, p, c.project)
	}
	if db := pid.GetDatabaseId(); db != cloudKeyPartDefault {
		return nsKey{}, nil, badRequest("%s is in database %q; aelocal serves only the default database", what, db)
	}
	sp := nsKey{app: c.app, ns: pid.GetNamespaceId()}
	if len(k.Path) == 0 {
		return sp, nil, badRequest("%s has an empty path", what)
	}
	if len(k.Path) > maxKeyDepth {
		return sp, nil, badRequest("%s has %d path elements; the limit is %d", what, len(k.Path), maxKeyDepth)
	}
	path := make(dsPath, len(k.Path))
	for i, e := range k.Path {
		el := dsElem{kind: e.Kind}
		switch t := e.IdType.(type) {
		case *pb.Key_PathElement_Id:
			el.id = t.Id
			if el.id == 0 {
				return sp, nil, badRequest("%s: path element %d has the ID 0", what, i)
			}
		case *pb.Key_PathElement_Name:
			el.name = t.Name
			if el.name == "" {
				return sp, nil, badRequest("%s: path element %d has an empty name", what, i)
			}
		}
		switch {
		case el.kind == "":
			return sp, nil, badRequest("%s: path element %d has an empty kind", what, i)
		case len(el.kind) > maxKeyPartBytes:
			return sp, nil, badRequest("%s: kind is %d bytes long; the limit is %d bytes", what, len(el.kind), maxKeyPartBytes)
		case len(el.name) > maxKeyPartBytes:
			return sp, nil, badRequest("%s: key name is %d bytes long; the limit is %d bytes", what, len(el.name), maxKeyPartBytes)
		case !el.complete() && i < len(k.Path)-1:
			return sp, nil, badRequest("%s: ancestor %s is incomplete", what, path[:i+1].String())
		case !el.complete() && !allowIncomplete:
			path[i] = el
			return sp, nil, badRequest("%s %s is incomplete", what, path.String())
		}
		path[i] = el
	}
	return sp, path, nil
}

// maxKeyDepth is production's bound on a key's path (and on nesting).
const maxKeyDepth = 100

// v1Key is the Cloud API's key of a v3 key.
func v1Key(app, ns string, path dsPath) *pb.Key {
	k := &pb.Key{PartitionId: &pb.PartitionId{ProjectId: projectOf(app), NamespaceId: ns}}
	k.Path = make([]*pb.Key_PathElement, len(path))
	for i, e := range path {
		pe := &pb.Key_PathElement{Kind: e.kind}
		switch {
		case e.name != "":
			pe.IdType = &pb.Key_PathElement_Name{Name: e.name}
		case e.id != 0:
			pe.IdType = &pb.Key_PathElement_Id{Id: e.id}
		}
		k.Path[i] = pe
	}
	return k
}

// v1KeyOfRef is v1Key of a Reference message.
func v1KeyOfRef(r pmsg) *pb.Key {
	els := r.Msg("path").Msgs("element")
	path := make(dsPath, len(els))
	for i, e := range els {
		path[i] = dsElem{kind: e.Str("type"), id: e.Int("id"), name: e.Str("name")}
	}
	return v1Key(r.Str("app"), r.Str("name_space"), path)
}

// v3Entity converts a v1 entity whose key is sp and path into a new
// EntityProto (the key written, the entity group left to the engine).
func (c *cloudScope) v3Entity(e *pb.Entity, sp nsKey, path dsPath) (pmsg, error) {
	ep, err := newMsg("appengine.v2.EntityProto")
	if err != nil {
		return ep, err
	}
	writeRef(ep.Mutable("key"), sp.app, sp.ns, path)
	ep.Mutable("entity_group")
	if err := c.v3Properties(ep, e.GetProperties(), 0); err != nil {
		return ep, err
	}
	return ep, nil
}

// maxNesting is production's bound on entity values within entity values
// (and arrays within them): 20 levels.
const maxNesting = 20

// v3Properties adds props to ep, in name order (the engine keeps the
// order it is given; a map has none). depth counts the entity values
// around ep.
func (c *cloudScope) v3Properties(ep pmsg, props map[string]*pb.Value, depth int) error {
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := props[name]
		switch {
		case name == "":
			return badRequest("a property name cannot be empty")
		case len(name) > maxKeyPartBytes:
			return badRequest("a property name is %d bytes long; the limit is %d bytes", len(name), maxKeyPartBytes)
		case v == nil:
			continue
		}
		if a, ok := v.ValueType.(*pb.Value_ArrayValue); ok {
			vals := a.ArrayValue.GetValues()
			if len(vals) == 0 {
				p := v3NewProperty(ep, !v.ExcludeFromIndexes)
				p.Set("name", name)
				p.Set("multiple", false)
				p.Set("meaning", int64(meaningEmptyList))
				p.Mutable("value")
				continue
			}
			for _, sub := range vals {
				if _, nested := sub.ValueType.(*pb.Value_ArrayValue); nested {
					return badRequest("property %q: an array value cannot contain another array value", name)
				}
				if err := c.v3Property(v3NewProperty(ep, !sub.ExcludeFromIndexes), name, true, sub, depth); err != nil {
					return err
				}
			}
			continue
		}
		if err := c.v3Property(v3NewProperty(ep, !v.ExcludeFromIndexes), name, false, v, depth); err != nil {
			return err
		}
	}
	return nil
}

func v3NewProperty(ep pmsg, indexed bool) pmsg {
	if indexed {
		return ep.AppendMsg("property")
	}
	return ep.AppendMsg("raw_property")
}

// v3Property fills p from the v1 value v (not an array), as
// datastore_pbs.v1_to_v3_property.
func (c *cloudScope) v3Property(p pmsg, name string, multi bool, v *pb.Value, depth int) error {
	p.Set("name", name)
	p.Set("multiple", multi)
	pv := p.Mutable("value")
	meaning := int64(v.Meaning)
	switch t := v.ValueType.(type) {
	case nil, *pb.Value_NullValue:
	case *pb.Value_BooleanValue:
		pv.Set("booleanValue", t.BooleanValue)
	case *pb.Value_IntegerValue:
		pv.Set("int64Value", t.IntegerValue)
		if meaning == meaningNonRFC3339 {
			p.Set("meaning", int64(meaningGDWhen))
			meaning = 0
		}
	case *pb.Value_DoubleValue:
		pv.Set("doubleValue", t.DoubleValue)
	case *pb.Value_TimestampValue:
		ts := t.TimestampValue
		if err := ts.CheckValid(); err != nil {
			return badRequest("property %q: invalid timestamp: %v", name, err)
		}
		pv.Set("int64Value", ts.GetSeconds()*1000000+int64(ts.GetNanos())/1000)
		p.Set("meaning", int64(meaningGDWhen))
	case *pb.Value_KeyValue:
		sp, path, err := c.key(t.KeyValue, "the key value of property "+quoteShort(name), true)
		if err != nil {
			return err
		}
		writeValue(pv, refValue(&dsRef{app: sp.app, ns: sp.ns, path: path}))
	case *pb.Value_StringValue:
		pv.Set("stringValue", t.StringValue)
	case *pb.Value_BlobValue:
		pv.Set("stringValue", t.BlobValue)
		if meaning == meaningZlib {
			p.Set("meaning_uri", uriMeaningZlib)
		}
		if meaning != meaningByteString {
			if v.ExcludeFromIndexes {
				p.Set("meaning", int64(meaningBlob))
			} else {
				p.Set("meaning", int64(meaningByteString))
			}
			meaning = 0
		}
	case *pb.Value_EntityValue:
		if meaning == meaningUser {
			return badRequest("property %q: user values are not supported by aelocal's Cloud Datastore API", name)
		}
		if depth+1 > maxNesting {
			return badRequest("property %q: entity values are nested more than %d levels deep", name, maxNesting)
		}
		sub, err := newMsg("appengine.v2.EntityProto")
		if err != nil {
			return err
		}
		if k := t.EntityValue.GetKey(); k != nil {
			sp, path, err := c.key(k, "the key of the entity value of property "+quoteShort(name), true)
			if err != nil {
				return err
			}
			writeRef(sub.Mutable("key"), sp.app, sp.ns, path)
		}
		if err := c.v3Properties(sub, t.EntityValue.GetProperties(), depth+1); err != nil {
			return err
		}
		b, err := proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(sub.m.Interface())
		if err != nil {
			return badRequest("property %q: cannot encode its entity value: %v", name, err)
		}
		pv.Set("stringValue", b)
		p.Set("meaning", int64(meaningEntity))
		meaning = 0
	case *pb.Value_GeoPointValue:
		g := t.GeoPointValue
		if g.GetLatitude() < -90 || g.GetLatitude() > 90 || g.GetLongitude() < -180 || g.GetLongitude() > 180 {
			return badRequest("property %q: invalid geo point (%v, %v): the latitude must be within [-90, 90] and the longitude within [-180, 180]", name, g.GetLatitude(), g.GetLongitude())
		}
		pt := pv.Mutable("pointvalue")
		pt.Set("x", g.GetLatitude())
		pt.Set("y", g.GetLongitude())
		if meaning != meaningPointNoV3 {
			p.Set("meaning", int64(meaningGeoPoint))
		}
		meaning = 0
	case *pb.Value_ArrayValue:
		return badRequest("property %q: an array value cannot contain another array value", name)
	default:
		return badRequest("property %q: unsupported value type %T", name, t)
	}
	if meaning != 0 {
		p.Set("meaning", meaning)
	}
	return nil
}

// v1Entity converts a stored EntityProto into a v1 entity, as
// datastore_pbs.v3_to_v1_entity.
func v1Entity(ep pmsg) *pb.Entity {
	e := &pb.Entity{}
	if k := ep.Msg("key"); k.Str("app") != "" {
		e.Key = v1KeyOfRef(k)
	}
	for _, f := range [...]struct {
		field   string
		indexed bool
	}{{"property", true}, {"raw_property", false}} {
		for _, p := range ep.Msgs(f.field) {
			name := p.Str("name")
			if e.Properties == nil {
				e.Properties = make(map[string]*pb.Value)
			}
			v := v1Value(p, f.indexed)
			if p.Bool("multiple") {
				arr := e.Properties[name]
				if arr == nil || arr.GetArrayValue() == nil {
					arr = &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{}}}
					e.Properties[name] = arr
				}
				a := arr.GetArrayValue()
				a.Values = append(a.Values, v)
				continue
			}
			e.Properties[name] = v
		}
	}
	return e
}

// v1Value converts one v3 property's value, as
// datastore_pbs.v3_property_to_v1_value.
func v1Value(p pmsg, indexed bool) *pb.Value {
	v := &pb.Value{}
	pv := p.Msg("value")
	meaning := p.Int("meaning")
	zlib := p.Str("meaning_uri") == uriMeaningZlib && pv.Has("stringValue")
	if zlib && meaning != meaningBlob {
		meaning = meaningBlob
	}
	switch {
	case meaning == meaningEmptyList:
		v.ValueType = &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{}}
		meaning = 0
	case pv.Has("booleanValue"):
		v.ValueType = &pb.Value_BooleanValue{BooleanValue: pv.Bool("booleanValue")}
	case pv.Has("int64Value"):
		i := pv.Int("int64Value")
		if meaning == meaningGDWhen && i >= rfc3339MinMicros && i <= rfc3339MaxMicros {
			v.ValueType = &pb.Value_TimestampValue{TimestampValue: timestamppb.New(time.UnixMicro(i))}
			meaning = 0
		} else {
			v.ValueType = &pb.Value_IntegerValue{IntegerValue: i}
		}
	case pv.Has("doubleValue"):
		v.ValueType = &pb.Value_DoubleValue{DoubleValue: pv.Float("doubleValue")}
	case pv.Has("referencevalue"):
		x := parseValue(pv)
		v.ValueType = &pb.Value_KeyValue{KeyValue: v1Key(x.ref().app, x.ref().ns, x.ref().path)}
	case pv.Has("stringValue"):
		s := pv.Bytes("stringValue")
		switch {
		case meaning == meaningEntity:
			sub, _ := newMsg("appengine.v2.EntityProto")
			if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(s, sub.m.Interface()); err == nil {
				v.ValueType = &pb.Value_EntityValue{EntityValue: v1Entity(sub)}
			} else {
				v.ValueType = &pb.Value_BlobValue{BlobValue: s}
			}
			meaning = 0
		case meaning == meaningBlob || meaning == meaningByteString:
			v.ValueType = &pb.Value_BlobValue{BlobValue: s}
			if indexed || meaning == meaningBlob {
				meaning = 0
			}
		case utf8.Valid(s):
			v.ValueType = &pb.Value_StringValue{StringValue: string(s)}
		default:
			v.ValueType = &pb.Value_BlobValue{BlobValue: s}
			if meaning != meaningIndexValue {
				meaning = 0
			}
		}
	case pv.Has("pointvalue"):
		if meaning != meaningGeoPoint {
			v.Meaning = meaningPointNoV3
		}
		pt := pv.Msg("pointvalue")
		v.ValueType = &pb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{Latitude: pt.Float("x"), Longitude: pt.Float("y")}}
		meaning = 0
	case pv.Has("uservalue"):
		u := pv.Msg("uservalue")
		props := map[string]*pb.Value{
			"email":       {ValueType: &pb.Value_StringValue{StringValue: u.Str("email")}},
			"auth_domain": {ValueType: &pb.Value_StringValue{StringValue: u.Str("auth_domain")}},
		}
		for _, f := range []string{"nickname", "federated_identity", "federated_provider"} {
			if u.Has(f) {
				props[f] = &pb.Value{ValueType: &pb.Value_StringValue{StringValue: u.Str(f)}, ExcludeFromIndexes: true}
			}
		}
		v.ValueType = &pb.Value_EntityValue{EntityValue: &pb.Entity{Properties: props}}
		v.Meaning = meaningUser
		meaning = 0
	default:
		v.ValueType = &pb.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}
	}
	if zlib {
		v.Meaning = meaningZlib
	} else if meaning != 0 {
		v.Meaning = int32(meaning)
	}
	v.ExcludeFromIndexes = !indexed
	return v
}

// v3FilterValue converts the value of a query filter or the like into a
// PropertyValue, by way of a property.
func (c *cloudScope) v3FilterValue(prop pmsg, name string, v *pb.Value) error {
	if v == nil {
		return badRequest("the filter on %q has no value", name)
	}
	return c.v3Property(prop, name, false, v, 0)
}

// nowProto is the server's clock as a timestamp.
func nowProto(s *Server) *timestamppb.Timestamp { return timestamppb.New(s.Now()) }
