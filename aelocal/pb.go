package aelocal

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The client packages register the App Engine service messages
	// (appengine.v2.*, remote_api.v2.*) in protoregistry.GlobalTypes.
	// aelocal decodes requests with those descriptors instead of carrying
	// generated code of its own.
	_ "google.golang.org/appengine/v2"
	_ "google.golang.org/appengine/v2/blobstore"
	_ "google.golang.org/appengine/v2/capability"
	_ "google.golang.org/appengine/v2/datastore"
	_ "google.golang.org/appengine/v2/image"
	_ "google.golang.org/appengine/v2/mail"
	_ "google.golang.org/appengine/v2/memcache"
	_ "google.golang.org/appengine/v2/module"
	_ "google.golang.org/appengine/v2/taskqueue"
	_ "google.golang.org/appengine/v2/urlfetch"
	_ "google.golang.org/appengine/v2/user"
)

// pmsg is a thin accessor over a protoreflect.Message that addresses fields
// by their proto name. Service code reads like "in.Bytes("key")" instead of
// descriptor plumbing. A field name that does not exist in the descriptor is
// a programming error in aelocal and panics; the dispatcher recovers it and
// answers with an internal error.
type pmsg struct{ m protoreflect.Message }

// newMsg makes an empty message of the registered type fullName.
func newMsg(fullName string) (pmsg, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(fullName))
	if err != nil {
		return pmsg{}, fmt.Errorf("aelocal: message type %s is not registered: %v", fullName, err)
	}
	return pmsg{mt.New()}, nil
}

func (p pmsg) fd(name string) protoreflect.FieldDescriptor {
	fd := p.m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic(fmt.Sprintf("aelocal: %s has no field %q", p.m.Descriptor().FullName(), name))
	}
	return fd
}

// Has reports whether the field is set.
func (p pmsg) Has(name string) bool { return p.m.Has(p.fd(name)) }

// Str returns a string or bytes field as a string.
func (p pmsg) Str(name string) string {
	v := p.m.Get(p.fd(name))
	if b, ok := v.Interface().([]byte); ok {
		return string(b)
	}
	return v.String()
}

// Bytes returns a bytes or string field as bytes.
func (p pmsg) Bytes(name string) []byte {
	v := p.m.Get(p.fd(name))
	if s, ok := v.Interface().(string); ok {
		return []byte(s)
	}
	return v.Bytes()
}

// Int returns any integer or enum field as int64.
func (p pmsg) Int(name string) int64 { return toInt(p.m.Get(p.fd(name))) }

// Uint returns any integer field as uint64.
func (p pmsg) Uint(name string) uint64 { return uint64(toInt(p.m.Get(p.fd(name)))) }

// Bool returns a bool field.
func (p pmsg) Bool(name string) bool { return p.m.Get(p.fd(name)).Bool() }

// Float returns a float or double field.
func (p pmsg) Float(name string) float64 { return p.m.Get(p.fd(name)).Float() }

// Msg returns a message or group field, read-only (an empty default when unset).
func (p pmsg) Msg(name string) pmsg { return pmsg{p.m.Get(p.fd(name)).Message()} }

// Mutable returns a message or group field for writing, creating it if unset.
func (p pmsg) Mutable(name string) pmsg { return pmsg{p.m.Mutable(p.fd(name)).Message()} }

// Msgs returns the elements of a repeated message or group field.
func (p pmsg) Msgs(name string) []pmsg {
	l := p.m.Get(p.fd(name)).List()
	out := make([]pmsg, l.Len())
	for i := range out {
		out[i] = pmsg{l.Get(i).Message()}
	}
	return out
}

// Len returns the length of a repeated field.
func (p pmsg) Len(name string) int { return p.m.Get(p.fd(name)).List().Len() }

// BytesList returns a repeated bytes or string field.
func (p pmsg) BytesList(name string) [][]byte {
	l := p.m.Get(p.fd(name)).List()
	out := make([][]byte, l.Len())
	for i := range out {
		switch v := l.Get(i).Interface().(type) {
		case []byte:
			out[i] = v
		case string:
			out[i] = []byte(v)
		}
	}
	return out
}

// IntList returns a repeated integer or enum field.
func (p pmsg) IntList(name string) []int64 {
	l := p.m.Get(p.fd(name)).List()
	out := make([]int64, l.Len())
	for i := range out {
		out[i] = toInt(l.Get(i))
	}
	return out
}

// Set sets a scalar field from a Go value of a compatible kind.
func (p pmsg) Set(name string, v any) {
	fd := p.fd(name)
	p.m.Set(fd, scalar(fd, v))
}

// Clear unsets a field.
func (p pmsg) Clear(name string) { p.m.Clear(p.fd(name)) }

// Append appends a scalar to a repeated field.
func (p pmsg) Append(name string, v any) {
	fd := p.fd(name)
	p.m.Mutable(fd).List().Append(scalar(fd, v))
}

// AppendMsg appends a new element to a repeated message or group field and returns it.
func (p pmsg) AppendMsg(name string) pmsg {
	l := p.m.Mutable(p.fd(name)).List()
	e := l.NewElement()
	l.Append(e)
	return pmsg{e.Message()}
}

// CopyFrom replaces the contents of p with a deep copy of src (same type).
func (p pmsg) CopyFrom(src pmsg) {
	proto.Reset(p.m.Interface())
	proto.Merge(p.m.Interface(), src.m.Interface())
}

// Share sets a message field to src itself, without copying it. Neither
// may be modified afterwards; for stored entities, which never change, and
// for a request's parts put into its answer.
func (p pmsg) Share(name string, src pmsg) {
	p.m.Set(p.fd(name), protoreflect.ValueOfMessage(src.m))
}

// Clone returns a deep copy.
func (p pmsg) Clone() pmsg { return pmsg{proto.Clone(p.m.Interface()).ProtoReflect()} }

// Marshal encodes the message deterministically.
func (p pmsg) Marshal() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(p.m.Interface())
}

// Size is the encoded size in bytes.
func (p pmsg) Size() int { return proto.Size(p.m.Interface()) }

func toInt(v protoreflect.Value) int64 {
	switch x := v.Interface().(type) {
	case int32:
		return int64(x)
	case int64:
		return x
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	case protoreflect.EnumNumber:
		return int64(x)
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

// scalar converts a Go value to the protoreflect.Value the field's kind needs.
func scalar(fd protoreflect.FieldDescriptor, v any) protoreflect.Value {
	var i int64
	switch x := v.(type) {
	case int:
		i = int64(x)
	case int32:
		i = int64(x)
	case int64:
		i = x
	case uint32:
		i = int64(x)
	case uint64:
		i = int64(x)
	case protoreflect.EnumNumber:
		i = int64(x)
	case string:
		if fd.Kind() == protoreflect.BytesKind {
			return protoreflect.ValueOfBytes([]byte(x))
		}
		return protoreflect.ValueOfString(x)
	case []byte:
		if fd.Kind() == protoreflect.StringKind {
			return protoreflect.ValueOfString(string(x))
		}
		return protoreflect.ValueOfBytes(x)
	case bool:
		return protoreflect.ValueOfBool(x)
	case float64:
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(x))
		}
		return protoreflect.ValueOfFloat64(x)
	default:
		panic(fmt.Sprintf("aelocal: cannot set %s from %T", fd.FullName(), v))
	}
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(i))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(i)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(i))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(i))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(i))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(i != 0)
	}
	panic(fmt.Sprintf("aelocal: cannot set %s (%v) from an integer", fd.FullName(), fd.Kind()))
}
