package aelocal

import (
	"context"
	"errors"
	"reflect"
	"sync"

	gproto "github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/taskqueue"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// apiErrorType is the type appengine/v2 uses for application errors
// (internal.APIError). Client code depends on that type, not on the text:
// datastore.RunInTransaction, for one, retries only when it sees an
// APIError with code CONCURRENT_TRANSACTION. Calls served in-process must
// therefore fail with the same type, which lives in an internal package.
// The one exported path that builds such a value without a server is
// taskqueue.DeleteMulti reporting a per-task failure, so we ask it once and
// keep the type.
var apiErrorType = sync.OnceValue(func() reflect.Type {
	ctx := appengine.WithAPICallFunc(context.Background(), func(_ context.Context, _, _ string, _, out gproto.Message) error {
		m := gproto.MessageV2(out).ProtoReflect()
		fd := m.Descriptor().Fields().ByName("result")
		if fd == nil {
			return errors.New("unexpected taskqueue response type")
		}
		m.Mutable(fd).List().Append(protoreflect.ValueOfEnum(1))
		return nil
	})
	err := taskqueue.DeleteMulti(ctx, []*taskqueue.Task{{Name: "probe"}}, "")
	var me appengine.MultiError
	if errors.As(err, &me) && len(me) == 1 && me[0] != nil {
		t := reflect.TypeOf(me[0])
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			if _, ok := t.Elem().FieldByName("Service"); ok {
				return t
			}
		}
	}
	return nil
})

// newAPIError returns an application error of the client's own type, as
// the HTTP bridge path would produce.
func newAPIError(service string, code int32, detail string) error {
	t := apiErrorType()
	if t == nil {
		return &serviceError{code: code, detail: detail}
	}
	v := reflect.New(t.Elem())
	v.Elem().FieldByName("Service").SetString(service)
	v.Elem().FieldByName("Detail").SetString(detail)
	v.Elem().FieldByName("Code").SetInt(int64(code))
	return v.Interface().(error)
}
