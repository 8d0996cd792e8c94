package aelocal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
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
}

func newRPCLog() *rpcLog { return &rpcLog{next: 1, since: time.Now()} }

// record is deferred by Server.call with the call's final error.
func (l *rpcLog) record(name string, start time.Time, reqBytes int, err *error) {
	rec := rpcRecord{Name: name, Start: start, Duration: time.Since(start), ReqBytes: reqBytes, Outcome: "ok", OK: true}
	if *err != nil {
		rec.Outcome, rec.OK = describeRPCError(*err), false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec.Seq = l.next
	l.next++
	l.buf[rec.Seq%rpcLogSize] = rec
}

// describeRPCError says what the client learns from err.
func describeRPCError(err error) string {
	var se *serviceError
	var re *rpcError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("application error %d: %s", se.code, se.detail)
	case errors.As(err, &re):
		return fmt.Sprintf("RPC error %d: %s", re.code, re.detail)
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return err.Error()
}

// latest returns up to n records older than seq before (0: the newest),
// newest first.
func (l *rpcLog) latest(before uint64, n int) []rpcRecord {
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
		out = append(out, l.buf[seq%rpcLogSize])
	}
	return out
}

// resetSince notes that the counts start again now.
func (l *rpcLog) resetSince(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since = t
}

// clear forgets every record so far.
func (l *rpcLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.floor = l.next
}

func (l *rpcLog) countsSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since
}
