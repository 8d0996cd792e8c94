package aelocal

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Messages aelocal describes itself: those of services whose client
// package it cannot link (appengine/v2 dropped the log service; the system
// service's client, appengine/v2/runtime, registers an /_ah/background
// handler on http.DefaultServeMux when linked). Each set lives under a
// package of aelocal's own, so a binary that links the real client too
// registers no name twice. The wire format depends only on numbers and
// types.

// describedField is one field: name, number, type, repeated, and the
// message type's short name for a message field.
type describedField struct {
	name     string
	num      int32
	typ      descriptorpb.FieldDescriptorProto_Type
	repeated bool
	msg      string
}

// describedMessage is one message: its short name and fields.
type describedMessage struct {
	name   string
	fields []describedField
}

// Field types, short.
const (
	pbInt32  = descriptorpb.FieldDescriptorProto_TYPE_INT32
	pbInt64  = descriptorpb.FieldDescriptorProto_TYPE_INT64
	pbString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	pbBytes  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
	pbBool   = descriptorpb.FieldDescriptorProto_TYPE_BOOL
	pbDouble = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
	pbMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
)

// registerDescribed registers messages under the proto package pkg (as
// "aelocal.logservice"), in a file of that name. It runs from init and
// panics on a mistake in the description, which a test run shows at once.
func registerDescribed(pkg string, messages []describedMessage) {
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(pkg + ".proto"),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto2"),
	}
	for _, m := range messages {
		dp := &descriptorpb.DescriptorProto{Name: proto.String(m.name)}
		for _, f := range m.fields {
			label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
			if f.repeated {
				label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
			}
			fp := &descriptorpb.FieldDescriptorProto{Name: proto.String(f.name), Number: proto.Int32(f.num), Type: f.typ.Enum(), Label: label.Enum()}
			if f.msg != "" {
				fp.TypeName = proto.String("." + pkg + "." + f.msg)
			}
			dp.Field = append(dp.Field, fp)
		}
		fd.MessageType = append(fd.MessageType, dp)
	}
	file, err := protodesc.NewFile(fd, protoregistry.GlobalFiles)
	if err != nil {
		panic("aelocal: the descriptors of " + pkg + ": " + err.Error())
	}
	for i := 0; i < file.Messages().Len(); i++ {
		if err := protoregistry.GlobalTypes.RegisterMessage(dynamicpb.NewMessageType(file.Messages().Get(i))); err != nil {
			panic("aelocal: registering the messages of " + pkg + ": " + err.Error())
		}
	}
}
