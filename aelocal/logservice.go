package aelocal

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// The log service: request logs, read with google.golang.org/appengine/log
// (v1; appengine/v2 has no log reads).
//
// The app's front end (Options.FrontAddr) records every request it passes
// on, as App Engine's does: method, resource, HTTP version, status,
// response size, start and end time and latency, IP, the signed-in user,
// user agent, referrer and host. It gives each request an ID, which the app
// sees in X-AppEngine-Request-Log-Id (appengine.RequestID) and as its API
// ticket (X-AppEngine-API-Ticket), so the app log lines the v1 client sends
// with logservice.Flush during and after the request join its record.
// (appengine/v2 writes its log lines to standard output instead, as
// second-generation runtimes do; those aelocal does not see.)
//
// Read answers LogReadRequest as production does: newest first, by
// version (this server's one version, "1", of module "default"), start
// and end time, request IDs, minimum level of the app's lines, with or
// without incomplete requests and app lines, count (20 by default, at most
// 1,000) and offsets.
//
// Memory is bounded: the latest logMaxRecords requests, in at most
// logMaxBytes all told; a request keeps at most logMaxRecordBytes of app
// lines, and says lines_incomplete past that.

const (
	logMaxRecords     = 10000
	logMaxBytes       = 32 << 20
	logMaxRecordBytes = 1 << 20
	// logRecordOverhead is what a record costs besides its strings.
	logRecordOverhead = 256
	logLineOverhead   = 32
	logDefaultCount   = 20
	logMaxCount       = 1000 // production's MAX_ITEMS_PER_FETCH
	// logVersion and logModule are the version and module requests are
	// recorded under: the modules service's.
	logVersion = localVersion
	logModule  = "default"

	logInvalidRequest = 1 // LogServiceError.INVALID_REQUEST

	requestLogIDHeader = "X-AppEngine-Request-Log-Id"
	apiTicketHeader    = "X-AppEngine-API-Ticket"
)

// logService keeps the request logs.
type logService struct {
	mu    sync.Mutex
	recs  []*requestRecord // oldest first
	byID  map[string]*requestRecord
	bytes int
	seq   uint64
}

// requestRecord is one request's log.
type requestRecord struct {
	id                         string // hex, in the order requests started
	start, end                 time.Time
	method, resource, proto    string
	ip, nickname, agent, refer string
	host                       string
	status                     int
	size                       int64
	finished                   bool
	lines                      []appLogLine
	linesIncomplete            bool
	bytes                      int
}

type appLogLine struct {
	usec  int64
	level int32
	msg   string
}

func newLogService() *logService { return &logService{byID: make(map[string]*requestRecord)} }

func init() {
	register("logservice", "Read", logPkg+"LogReadRequest", logPkg+"LogReadResponse", logRead)
	registerCtx("logservice", "Flush", logPkg+"FlushRequest", "appengine.base.v2.VoidProto", logFlush)
	serviceFailureCodes["logservice"] = 2 // STORAGE_ERROR
}

// requestLogKey is the context key of the ID of the request the front end
// is passing on.
type requestLogKey struct{}

// logRequests records every request h serves.
func (s *Server) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &requestRecord{
			start:    s.Now(),
			method:   r.Method,
			resource: r.URL.RequestURI(),
			proto:    r.Proto,
			agent:    r.UserAgent(),
			refer:    r.Referer(),
			host:     r.Host,
		}
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			rec.ip = ip
		}
		if u := s.loginUser(r); u != nil && fromAppSite(r) {
			rec.nickname = u.Email
		}
		s.logs.add(rec)
		lw := &loggingWriter{ResponseWriter: w}
		defer func() { s.logs.finish(rec, lw.status, lw.size, s.Now()) }()
		h.ServeHTTP(lw, r.WithContext(context.WithValue(r.Context(), requestLogKey{}, rec.id)))
	})
}

// setRequestLogHeaders gives the app the ID of its request (the front
// end's Rewrite calls it, after removing what came from outside).
func setRequestLogHeaders(in *http.Request, out http.Header) {
	if id, ok := in.Context().Value(requestLogKey{}).(string); ok {
		out.Set(requestLogIDHeader, id)
		out.Set(apiTicketHeader, id)
	}
}

// loggingWriter notes the status and size of a response.
type loggingWriter struct {
	http.ResponseWriter
	status int
	size   int64
}

func (w *loggingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx are interim answers
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a streamed response on at once.
func (w *loggingWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (r *requestRecord) cost() int {
	return logRecordOverhead + len(r.resource) + len(r.agent) + len(r.refer) + len(r.host) + len(r.nickname)
}

// add starts the record of a request and gives it its ID.
func (l *logService) add(rec *requestRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	rec.id = fmt.Sprintf("%014x%010x", rec.start.UnixMicro(), l.seq)
	rec.bytes = rec.cost()
	l.recs = append(l.recs, rec)
	l.byID[rec.id] = rec
	l.bytes += rec.bytes
	l.evictLocked()
}

// evictLocked drops the oldest records past the bounds.
func (l *logService) evictLocked() {
	n := 0
	for len(l.recs)-n > logMaxRecords || (l.bytes > logMaxBytes && len(l.recs)-n > 1) {
		old := l.recs[n]
		l.bytes -= old.bytes
		delete(l.byID, old.id)
		l.recs[n] = nil
		n++
	}
	if n > 0 {
		l.recs = append(l.recs[:0:0], l.recs[n:]...)
	}
}

// finish completes the record of a request.
func (l *logService) finish(rec *requestRecord, status int, size int64, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	rec.status, rec.size, rec.end, rec.finished = status, size, end, true
}

// apiTicketKey is the context key of the API ticket a bridge call carried
// (remote_api Request.request_id).
type apiTicketKey struct{}

func withAPITicket(ctx context.Context, ticket string) context.Context {
	return context.WithValue(ctx, apiTicketKey{}, ticket)
}

// logFlush adds the app's log lines to the record of the request whose
// ticket the call carries. Lines of a request the server does not know
// (no front end, or one evicted) are dropped, as production drops lines
// without a request.
func logFlush(ctx context.Context, s *Server, in, out pmsg) error {
	group, err := newMsg(logPkg + "UserAppLogGroup")
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(in.Bytes("logs"), group.m.Interface()); err != nil {
		return errorf(logInvalidRequest, "the logs of the flush do not parse: %v", err)
	}
	ticket, _ := ctx.Value(apiTicketKey{}).(string)
	l := s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.byID[ticket]
	if rec == nil {
		return nil
	}
	for _, ll := range group.Msgs("log_line") {
		line := appLogLine{usec: ll.Int("timestamp_usec"), level: int32(ll.Int("level")), msg: ll.Str("message")}
		cost := logLineOverhead + len(line.msg)
		if rec.bytes+cost > logMaxRecordBytes {
			rec.linesIncomplete = true
			break
		}
		rec.lines = append(rec.lines, line)
		rec.bytes += cost
		l.bytes += cost
	}
	l.evictLocked()
	return nil
}

// isHex reports whether s is a non-empty string of hex digits, the form of
// production's request IDs.
func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return s != ""
}

func logRead(s *Server, in, out pmsg) error {
	versionOK, err := logVersionFilter(in)
	if err != nil {
		return err
	}
	ids := in.BytesList("request_id")
	if len(ids) > 0 && (in.Has("start_time") || in.Has("end_time") || in.Has("offset")) {
		return errorf(logInvalidRequest, "request IDs cannot be combined with start_time, end_time or offset")
	}
	for _, id := range ids {
		if !isHex(string(id)) {
			return errorf(logInvalidRequest, "request ID %q is not a hex string", id)
		}
	}
	count := int64(logDefaultCount)
	if in.Has("count") {
		count = in.Int("count")
		if count <= 0 {
			return errorf(logInvalidRequest, "count must be positive, not %d", count)
		}
		count = min(count, logMaxCount)
	}
	offset := ""
	if in.Has("offset") {
		offset = in.Msg("offset").Str("request_id")
		if !isHex(offset) {
			return errorf(logInvalidRequest, "the offset does not come from a log read")
		}
	}
	minLevel := int64(-1)
	if in.Has("minimum_log_level") {
		minLevel = in.Int("minimum_log_level")
	}
	withLines := in.Bool("include_app_logs")
	app := blobApp()

	l := s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	var picked []*requestRecord
	if len(ids) > 0 {
		for _, id := range ids {
			if rec := l.byID[strings.ToLower(string(id))]; rec != nil && versionOK(logModule, rec) {
				picked = append(picked, rec)
			}
		}
		for _, rec := range picked {
			fillRequestLog(out.AppendMsg("log"), rec, app, withLines)
		}
		return nil
	}
	more := false
	// Newest first; an offset is the ID of the last record returned, and
	// IDs order records as they started.
	i := len(l.recs)
	if offset != "" {
		i = sort.Search(len(l.recs), func(i int) bool { return l.recs[i].id >= offset })
	}
	for i--; i >= 0; i-- {
		rec := l.recs[i]
		if !rec.finished && !in.Bool("include_incomplete") {
			continue
		}
		if !versionOK(logModule, rec) {
			continue
		}
		// Production filters on when a request completed (or was last
		// updated, for one still running).
		t := rec.end
		if !rec.finished {
			t = rec.start
		}
		if in.Has("start_time") && t.UnixMicro() < in.Int("start_time") {
			continue
		}
		if in.Has("end_time") && t.UnixMicro() >= in.Int("end_time") {
			continue
		}
		if minLevel >= 0 && !hasLineAtLeast(rec, minLevel) {
			continue
		}
		if int64(len(picked)) == count {
			more = true
			break
		}
		picked = append(picked, rec)
	}
	for _, rec := range picked {
		fillRequestLog(out.AppendMsg("log"), rec, app, withLines)
	}
	if more {
		out.Mutable("offset").Set("request_id", picked[len(picked)-1].id)
	}
	return nil
}

func hasLineAtLeast(rec *requestRecord, level int64) bool {
	for _, ln := range rec.lines {
		if int64(ln.level) >= level {
			return true
		}
	}
	return false
}

// logVersionFilter reads the versions a read asks for: version_id (of
// module default) or module_version. Production needs at least one.
func logVersionFilter(in pmsg) (func(module string, rec *requestRecord) bool, error) {
	type mv struct{ module, version string }
	var want []mv
	for _, v := range in.BytesList("version_id") {
		want = append(want, mv{logModule, string(v)})
	}
	for _, m := range in.Msgs("module_version") {
		module := m.Str("module_id")
		if module == "" {
			module = logModule
		}
		want = append(want, mv{module, m.Str("version_id")})
	}
	if len(want) == 0 {
		return nil, errorf(logInvalidRequest, "a log read names at least one version")
	}
	return func(module string, rec *requestRecord) bool {
		for _, w := range want {
			if w.module == module && (w.version == logVersion || strings.HasPrefix(w.version, logVersion+".")) {
				return true
			}
		}
		return false
	}, nil
}

// fillRequestLog writes rec as a RequestLog, every field the v1 client
// reads set (it dereferences them).
func fillRequestLog(p pmsg, rec *requestRecord, app string, withLines bool) {
	p.Set("app_id", app)
	p.Set("module_id", logModule)
	p.Set("version_id", logVersion)
	p.Set("request_id", rec.id)
	p.Mutable("offset").Set("request_id", rec.id)
	p.Set("ip", rec.ip)
	p.Set("nickname", rec.nickname)
	p.Set("start_time", rec.start.UnixMicro())
	end := int64(0)
	if rec.finished {
		end = rec.end.UnixMicro()
		p.Set("latency", end-rec.start.UnixMicro())
	} else {
		p.Set("latency", int64(0))
	}
	p.Set("end_time", end)
	p.Set("mcycles", int64(0))
	p.Set("method", rec.method)
	p.Set("resource", rec.resource)
	p.Set("http_version", rec.proto)
	p.Set("status", rec.status)
	p.Set("response_size", rec.size)
	p.Set("referrer", rec.refer)
	p.Set("user_agent", rec.agent)
	p.Set("url_map_entry", "")
	p.Set("host", rec.host)
	p.Set("finished", rec.finished)
	nick := rec.nickname
	if nick == "" {
		nick = "-"
	}
	// Apache's combined log format, as production's combined field.
	at := rec.start
	if rec.finished {
		at = rec.end
	}
	p.Set("combined", fmt.Sprintf("%s - %s [%s] %q %d %d %q %q", rec.ip, nick, at.Format("02/Jan/2006:15:04:05 -0700"),
		rec.method+" "+rec.resource+" "+rec.proto, rec.status, rec.size, orDash(rec.refer), orDash(rec.agent)))
	if withLines {
		for _, ln := range rec.lines {
			lp := p.AppendMsg("line")
			lp.Set("time", ln.usec)
			lp.Set("level", ln.level)
			lp.Set("log_message", ln.msg)
		}
		if rec.linesIncomplete {
			p.Set("lines_incomplete", true)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
