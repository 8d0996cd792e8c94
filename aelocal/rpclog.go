package aelocal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// rpcLogSize is how many calls the RPC log keeps: enough to see what one
// page of an app did, small enough to cost nothing.
const rpcLogSize = 500

// rpcRecord is one API call the server answered.
type rpcRecord struct {
	Seq      uint64 // 1 for the first call since the server started
	Start    time.Time
	Name     string // "service.Method"
	Duration time.Duration
	ReqBytes int
	Outcome  string // "ok", or what the caller was told
	OK       bool
}

// rpcLog is a bounded ring buffer of the latest calls, for the console.
// It has a lock of its own so that recording never waits on the server's.
type rpcLog struct {
	mu    sync.Mutex
	buf   [rpcLogSize]rpcRecord
	next  uint64    // Seq of the next record
	floor uint64    // records below this Seq were cleared
	since time.Time // when the counts started: server start or ResetStats
	// fails counts the failed calls since then, by the Stats key
	// (OtherCalls for unknown methods, so that the map stays as small as
	// the method table).
	fails map[string]int64
}

func newRPCLog() *rpcLog {
	return &rpcLog{next: 1, since: time.Now(), fails: make(map[string]int64)}
}

// record is deferred by Server.call with the call's final error.
func (l *rpcLog) record(name string, start time.Time, reqBytes int, err *error) {
	rec := rpcRecord{Name: name, Start: start, Duration: time.Since(start), ReqBytes: reqBytes, Outcome: "ok", OK: true}
	if *err != nil {
		service, _, _ := strings.Cut(name, ".")
		rec.Outcome, rec.OK = describeRPCError(service, *err), false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec.Seq = l.next
	l.next++
	l.buf[rec.Seq%rpcLogSize] = rec
	if !rec.OK {
		key := name
		if _, ok := methods[name]; !ok && !cloudMethods[name] {
			key = OtherCalls
		}
		l.fails[key]++
	}
}

// describeRPCError says what the client learns from err, naming an error
// code as the service's protocol buffer does (RESOURCE_EXHAUSTED), which
// is what the client's error message and App Engine's documentation say.
func describeRPCError(service string, err error) string {
	var se *serviceError
	var re *rpcError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s: %s (application error %d)", errorCodeName(serviceErrorEnums[service], se.code), se.detail, se.code)
	case errors.As(err, &re):
		return fmt.Sprintf("%s: %s (RPC error %d)", errorCodeName("remote_api.v2.RpcError.ErrorCode", re.code), re.detail, re.code)
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return err.Error()
}

// serviceErrorEnums names each service's enum of application error codes.
var serviceErrorEnums = map[string]string{
	"datastore_v3":         "appengine.v2.Error.ErrorCode",
	"memcache":             "appengine.v2.MemcacheServiceError.ErrorCode",
	"taskqueue":            "appengine.v2.TaskQueueServiceError.ErrorCode",
	"mail":                 "appengine.v2.MailServiceError.ErrorCode",
	"user":                 "appengine.v2.UserServiceError.ErrorCode",
	"urlfetch":             "appengine.v2.URLFetchServiceError.ErrorCode",
	"modules":              "appengine.v2.ModulesServiceError.ErrorCode",
	"app_identity_service": "appengine.v2.AppIdentityServiceError.ErrorCode",
	"images":               "appengine.v2.ImagesServiceError.ErrorCode",
}

// errorCodeName is the name of code in the enum named enum, from the
// protocol buffer registry, or "error CODE" for a code or a service it
// does not know.
func errorCodeName(enum string, code int32) string {
	if enum != "" {
		if et, err := protoregistry.GlobalTypes.FindEnumByName(protoreflect.FullName(enum)); err == nil {
			if v := et.Descriptor().Values().ByNumber(protoreflect.EnumNumber(code)); v != nil {
				return string(v.Name())
			}
		}
	}
	return fmt.Sprintf("error %d", code)
}

// failures returns the failed calls since the counts started, by Stats key.
func (l *rpcLog) failures() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.fails)
}

// latest returns up to n records older than seq before (0: the newest),
// newest first.
func (l *rpcLog) latest(before uint64, n int) []rpcRecord {
	return l.latestMatching(before, n, nil)
}

// latestMatching is latest of the records keep accepts (nil: all).
func (l *rpcLog) latestMatching(before uint64, n int, keep func(*rpcRecord) bool) []rpcRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	top := l.next
	if before > 0 && before < top {
		top = before
	}
	var oldest uint64 = 1
	if l.next > rpcLogSize {
		oldest = l.next - rpcLogSize
	}
	oldest = max(oldest, l.floor)
	var out []rpcRecord
	for seq := top - 1; seq >= oldest && seq > 0 && len(out) < n; seq-- {
		if rec := &l.buf[seq%rpcLogSize]; keep == nil || keep(rec) {
			out = append(out, *rec)
		}
	}
	return out
}

// resetSince notes that the counts start again now.
func (l *rpcLog) resetSince(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since = t
	clear(l.fails)
}

// clear forgets every record so far.
func (l *rpcLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.floor = l.next
	clear(l.fails)
}

func (l *rpcLog) countsSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since
}
