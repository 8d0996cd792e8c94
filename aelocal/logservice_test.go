package aelocal

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/protobuf/proto"
)

// logApp answers each request with its request ID and the status its
// path names (/status/404), behind a front end.
func logServer(t *testing.T) *Server {
	t.Helper()
	var s *Server
	mux := http.NewServeMux()
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
		fmt.Fprint(w, appengine.RequestID(appengine.NewContext(r)))
	})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Middleware(mux).ServeHTTP(w, r)
	}))
	t.Cleanup(app.Close)
	var err error
	s, err = NewServerOptions(&Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// frontGet sends a request through the front end and returns the request
// ID the app saw.
func frontGet(t *testing.T, s *Server, path, agent string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.FrontURL()+path, nil)
	req.Header.Set("User-Agent", agent)
	req.Header.Set("X-AppEngine-Request-Log-Id", "forged") // the front end replaces it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// flushLines sends app log lines as the v1 client does after a request:
// logservice.Flush on the bridge, with the request's API ticket.
func flushLines(t *testing.T, s *Server, ticket string, lines ...appLogLine) {
	t.Helper()
	group, _ := newMsg(logPkg + "UserAppLogGroup")
	for _, ln := range lines {
		g := group.AppendMsg("log_line")
		g.Set("timestamp_usec", ln.usec)
		g.Set("level", int64(ln.level))
		g.Set("message", ln.msg)
	}
	gb, _ := group.Marshal()
	req, _ := newMsg(logPkg + "FlushRequest")
	req.Set("logs", gb)
	inner, _ := req.Marshal()
	env, _ := newMsg("remote_api.v2.Request")
	env.Set("service_name", "logservice")
	env.Set("method", "Flush")
	env.Set("request", inner)
	env.Set("request_id", ticket)
	b, _ := env.Marshal()
	h := make(http.Header)
	setBridgeHeaders(h)
	code, body := send(t, s, "POST", "/rpc_http", b, h)
	resp, _ := newMsg("remote_api.v2.Response")
	if err := proto.Unmarshal([]byte(body), resp.m.Interface()); code != 200 || err != nil || resp.Has("rpc_error") || resp.Has("application_error") {
		t.Fatalf("Flush: %d %v %v", code, err, resp.m)
	}
}

// readLogs runs one LogReadRequest that fill describes.
func readLogs(t *testing.T, s *Server, fill func(in pmsg)) (pmsg, error) {
	t.Helper()
	in, _ := newMsg(logPkg + "LogReadRequest")
	in.Set("app_id", blobApp())
	fill(in)
	out, _ := newMsg(logPkg + "LogReadResponse")
	err := s.Call(middlewareContext(t, s), "logservice", "Read", protoV1(in), protoV1(out))
	return out, err
}

func resources(out pmsg) string {
	var rs []string
	for _, l := range out.Msgs("log") {
		rs = append(rs, l.Str("resource"))
	}
	return strings.Join(rs, " ")
}

// TestLogRead shows production's answers to LogReadRequest (its documented
// filters; the SDK's stub for errors) next to aelocal's.
func TestLogRead(t *testing.T) {
	s := logServer(t)
	ids := map[string]string{}
	for _, p := range []string{"/status/200", "/status/404", "/status/500", "/status/201"} {
		ids[p] = frontGet(t, s, p, "agent "+p)
	}
	if id := ids["/status/404"]; !isHex(id) || id == "forged" || len(id) != 24 {
		t.Fatalf("the app saw request ID %q", id)
	}
	now := time.Now().UnixMicro()
	flushLines(t, s, ids["/status/404"], appLogLine{now, 1, "info line"}, appLogLine{now, 3, "error line"})
	flushLines(t, s, ids["/status/500"], appLogLine{now, 4, "critical line"})
	flushLines(t, s, "unknown-ticket", appLogLine{now, 4, "dropped"})

	v1 := func(in pmsg) { in.Append("version_id", "1") }
	with := func(fs ...func(in pmsg)) func(in pmsg) {
		return func(in pmsg) {
			for _, f := range fs {
				f(in)
			}
		}
	}
	for _, c := range []struct {
		name string
		fill func(in pmsg)
		want string // resources, newest first; "error" for INVALID_REQUEST
	}{
		{"all of version 1, newest first", v1, "/status/201 /status/500 /status/404 /status/200"},
		{"version with minor", func(in pmsg) { in.Append("version_id", "1.123") }, "/status/201 /status/500 /status/404 /status/200"},
		{"module and version", func(in pmsg) { m := in.AppendMsg("module_version"); m.Set("version_id", "1") }, "/status/201 /status/500 /status/404 /status/200"},
		{"another version", func(in pmsg) { in.Append("version_id", "2") }, ""},
		{"another module", func(in pmsg) {
			m := in.AppendMsg("module_version")
			m.Set("module_id", "api")
			m.Set("version_id", "1")
		}, ""},
		{"no version", func(in pmsg) {}, "error"},
		{"count", with(v1, func(in pmsg) { in.Set("count", int64(2)) }), "/status/201 /status/500"},
		{"minimum level ERROR", with(v1, func(in pmsg) { in.Set("minimum_log_level", int32(3)) }), "/status/500 /status/404"},
		{"minimum level CRITICAL", with(v1, func(in pmsg) { in.Set("minimum_log_level", int32(4)) }), "/status/500"},
		{"minimum level DEBUG: requests with any line", with(v1, func(in pmsg) { in.Set("minimum_log_level", int32(0)) }), "/status/500 /status/404"},
		{"request IDs", with(v1, func(in pmsg) {
			in.Append("request_id", ids["/status/200"])
			in.Append("request_id", ids["/status/500"])
		}), "/status/200 /status/500"},
		{"request ID not hex", with(v1, func(in pmsg) { in.Append("request_id", "xyz") }), "error"},
		{"request IDs and a time", with(v1, func(in pmsg) { in.Append("request_id", ids["/status/200"]); in.Set("start_time", int64(1)) }), "error"},
		{"end time in the past", with(v1, func(in pmsg) { in.Set("end_time", int64(1)) }), ""},
		{"start time in the future", with(v1, func(in pmsg) { in.Set("start_time", now+int64(time.Hour/time.Microsecond)) }), ""},
		{"start time in the past", with(v1, func(in pmsg) { in.Set("start_time", int64(1)) }), "/status/201 /status/500 /status/404 /status/200"},
		{"negative count", with(v1, func(in pmsg) { in.Set("count", int64(-1)) }), "error"},
	} {
		out, err := readLogs(t, s, c.fill)
		if c.want == "error" {
			if !isAPIError(err, "logservice", logInvalidRequest) {
				t.Errorf("%s: %v, want INVALID_REQUEST", c.name, err)
			}
			continue
		}
		if err != nil || resources(out) != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, resources(out), err, c.want)
		}
	}

	// Offsets page through, newest first.
	var pages []string
	var offset []byte
	for range 5 {
		out, err := readLogs(t, s, with(v1, func(in pmsg) {
			in.Set("count", int64(3))
			if offset != nil {
				in.Mutable("offset").Set("request_id", offset)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, resources(out))
		if !out.Has("offset") {
			break
		}
		offset = out.Msg("offset").Bytes("request_id")
	}
	if got := strings.Join(pages, " | "); got != "/status/201 /status/500 /status/404 | /status/200" {
		t.Errorf("pages: %q", got)
	}

	// One record in full, with and without app lines.
	out, _ := readLogs(t, s, with(v1, func(in pmsg) { in.Append("request_id", ids["/status/404"]); in.Set("include_app_logs", true) }))
	l := out.Msgs("log")[0]
	frontHost := strings.TrimPrefix(s.FrontURL(), "http://")
	if l.Str("method") != "GET" || l.Int("status") != 404 || l.Str("http_version") != "HTTP/1.1" || l.Str("user_agent") != "agent /status/404" ||
		l.Str("ip") != "127.0.0.1" || l.Str("host") != frontHost || l.Int("response_size") != 24 || !l.Bool("finished") ||
		l.Str("request_id") != ids["/status/404"] || l.Str("version_id") != "1" || l.Str("module_id") != "default" ||
		l.Int("end_time") < l.Int("start_time") || l.Int("latency") != l.Int("end_time")-l.Int("start_time") ||
		!strings.Contains(l.Str("combined"), `"GET /status/404 HTTP/1.1" 404 24 "-" "agent /status/404"`) {
		t.Errorf("the record: %v", l.m)
	}
	if ls := l.Msgs("line"); len(ls) != 2 || ls[0].Str("log_message") != "info line" || ls[1].Int("level") != 3 || ls[0].Int("time") != now {
		t.Errorf("its app lines: %v", l.m)
	}
	// The console shows the requests and their lines.
	_, page := getPage(t, s, "/logs")
	mustContain(t, page, `<tr id="req-`+ids["/status/404"]+`">`, "GET /status/404", "INFO info line", "ERROR error line", "CRITICAL critical line", "agent /status/201")
	out, _ = readLogs(t, s, with(v1, func(in pmsg) { in.Append("request_id", ids["/status/404"]) }))
	if n := out.Msgs("log")[0].Len("line"); n != 0 {
		t.Errorf("%d app lines without include_app_logs", n)
	}
}

// TestLogBounds: the records a server keeps are bounded, and one request's
// app lines too.
func TestLogBounds(t *testing.T) {
	s := logServer(t)
	id := frontGet(t, s, "/status/200", "a")
	big := strings.Repeat("x", 100<<10)
	var lines []appLogLine
	for range 20 {
		lines = append(lines, appLogLine{1, 1, big})
	}
	flushLines(t, s, id, lines...)
	out, _ := readLogs(t, s, func(in pmsg) {
		in.Append("version_id", "1")
		in.Set("include_app_logs", true)
	})
	l := out.Msgs("log")[0]
	if n := l.Len("line"); n == 0 || n >= 20 || !l.Bool("lines_incomplete") {
		t.Errorf("%d lines kept of 20 of 100 KiB, lines_incomplete %v", n, l.Bool("lines_incomplete"))
	}
	// Many requests: the oldest go.
	l2 := s.logs
	for i := range logMaxRecords + 5 {
		l2.add(&requestRecord{start: time.Unix(int64(i), 0), resource: "/r"})
	}
	l2.mu.Lock()
	n, total := len(l2.recs), l2.bytes
	_, kept := l2.byID[id]
	l2.mu.Unlock()
	if n != logMaxRecords || kept || total > logMaxBytes {
		t.Errorf("%d records, %d bytes, the first kept %v", n, total, kept)
	}
}
