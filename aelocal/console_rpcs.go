package aelocal

import (
	"net/http"
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
	Count           int64
}

type rpcsPage struct {
	Since   time.Time
	Total   int64
	Counts  []rpcCount
	Calls   []rpcRecord
	Older   uint64 // ?before= for the next page of older calls, 0 if none
	Newest  bool   // this page starts at the newest call
	LogSize int
}

func (c *console) rpcRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /rpcs", c.serveRPCs)
	c.post(mux, "/rpcs/reset", c.postRPCReset)
}

func (c *console) serveRPCs(w http.ResponseWriter, r *http.Request) {
	d := &rpcsPage{Since: c.s.rpcs.countsSince(), LogSize: rpcLogSize}
	for name, n := range c.s.Stats() {
		svc, method, _ := strings.Cut(name, ".")
		d.Counts = append(d.Counts, rpcCount{svc, method, n})
		d.Total += n
	}
	slices.SortFunc(d.Counts, func(a, b rpcCount) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	before, _ := strconv.ParseUint(r.URL.Query().Get("before"), 10, 64)
	d.Newest = before == 0
	d.Calls = c.s.rpcs.latest(before, rpcsPerPage+1)
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
