package aelocal

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The RPC page: how many calls of each service and method the app made
// since the server started or the counts were reset, and the latest calls
// with their duration and outcome, from the RPC log.

// rpcsPerPage is how many calls of the log one page lists.
const rpcsPerPage = 50

type rpcCount struct {
	Service, Method string
	Count, Failed   int64
}

// Name is the call's "service.Method", as the log names it.
func (c rpcCount) Name() string {
	if c.Method == "" {
		return c.Service
	}
	return c.Service + "." + c.Method
}

type rpcsPage struct {
	Since   time.Time
	Total   int64
	Failed  int64
	Counts  []rpcCount
	Calls   []rpcRecord
	Older   uint64 // ?before= for the next page of older calls, 0 if none
	Newest  bool   // this page starts at the newest call
	LogSize int
	// The log's filter: only failed calls, only calls of one method.
	OnlyFailed bool
	Call       string
}

// Query is the URL of the log with this page's filter, before seq (0:
// from the newest call).
func (d *rpcsPage) Query(before uint64) string {
	q := url.Values{}
	if d.OnlyFailed {
		q.Set("failed", "1")
	}
	if d.Call != "" {
		q.Set("call", d.Call)
	}
	if before != 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	if len(q) == 0 {
		return "/rpcs"
	}
	return "/rpcs?" + q.Encode()
}

// Filtered reports whether the log is filtered.
func (d *rpcsPage) Filtered() bool { return d.OnlyFailed || d.Call != "" }

func (c *console) rpcRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /rpcs", c.serveRPCs)
	c.post(mux, "/rpcs/reset", c.postRPCReset)
}

func (c *console) serveRPCs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &rpcsPage{Since: c.s.rpcs.countsSince(), LogSize: rpcLogSize, OnlyFailed: q.Get("failed") != "", Call: q.Get("call")}
	fails := c.s.rpcs.failures()
	for name, n := range c.s.Stats() {
		svc, method, _ := strings.Cut(name, ".")
		d.Counts = append(d.Counts, rpcCount{svc, method, n, fails[name]})
		d.Total += n
		d.Failed += fails[name]
	}
	slices.SortFunc(d.Counts, func(a, b rpcCount) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	before, _ := strconv.ParseUint(q.Get("before"), 10, 64)
	d.Newest = before == 0
	var keep func(*rpcRecord) bool
	if d.Filtered() {
		keep = func(rec *rpcRecord) bool {
			return (!d.OnlyFailed || !rec.OK) && (d.Call == "" || rec.Name == d.Call)
		}
	}
	d.Calls = c.s.rpcs.latestMatching(before, rpcsPerPage+1, keep)
	if len(d.Calls) > rpcsPerPage {
		d.Calls = d.Calls[:rpcsPerPage]
		d.Older = d.Calls[len(d.Calls)-1].Seq
	}
	c.render(w, r, http.StatusOK, "rpcs", &consolePage{Title: "RPCs", Section: "RPCs", Data: d})
}

// postRPCReset sets the counts back to zero and empties the log, so that
// what the page shows next is what the app does from now on.
func (c *console) postRPCReset(w http.ResponseWriter, r *http.Request) {
	c.s.ResetStats()
	c.s.rpcs.clear()
	redirect(w, r, "/rpcs", nil, "reset")
}
