package aelocal

import (
	"net/http"
	"time"
)

// The request logs page: the requests the app's front end passed on,
// newest first, with the app's log lines of each, in pages.

const logsPerPage = 50

type logLineView struct {
	At      time.Time
	Level   string
	Message string
}

type requestView struct {
	ID, Method, Resource, Agent, User string
	Status                            int
	Size                              int64
	Start                             time.Time
	Latency                           time.Duration
	Finished, LinesIncomplete         bool
	Lines                             []logLineView
}

type logsPage struct {
	Requests []requestView
	Older    string // ?before= for older requests, "" if none
	Newest   bool
	Front    bool // the server has a front end that records requests
	Kept     int
}

// logLevelNames are the names of the app's log levels, as production's
// console shows them.
var logLevelNames = []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

func (c *console) logRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /logs", c.serveLogs)
}

func (c *console) serveLogs(w http.ResponseWriter, r *http.Request) {
	before := r.URL.Query().Get("before")
	d := &logsPage{Newest: before == "", Front: c.s.FrontURL() != "", Kept: logMaxRecords}
	recs := c.s.logs.latest(before, logsPerPage+1)
	if len(recs) > logsPerPage {
		recs = recs[:logsPerPage]
		d.Older = recs[len(recs)-1].ID
	}
	d.Requests = recs
	c.render(w, r, http.StatusOK, "logs", &consolePage{Title: "Request logs", Section: "Logs", Data: d})
}

// latest returns up to n records that started before the record before
// (all if ""), newest first, as views.
func (l *logService) latest(before string, n int) []requestView {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []requestView
	for i := len(l.recs) - 1; i >= 0 && len(out) < n; i-- {
		rec := l.recs[i]
		if before != "" && rec.id >= before {
			continue
		}
		v := requestView{ID: rec.id, Method: rec.method, Resource: rec.resource, Agent: rec.agent, User: rec.nickname,
			Status: rec.status, Size: rec.size, Start: rec.start, Finished: rec.finished, LinesIncomplete: rec.linesIncomplete}
		if rec.finished {
			v.Latency = rec.end.Sub(rec.start)
		}
		for _, ln := range rec.lines {
			level := "LEVEL?"
			if ln.level >= 0 && int(ln.level) < len(logLevelNames) {
				level = logLevelNames[ln.level]
			}
			v.Lines = append(v.Lines, logLineView{At: time.UnixMicro(ln.usec), Level: level, Message: ln.msg})
		}
		out = append(out, v)
	}
	return out
}
