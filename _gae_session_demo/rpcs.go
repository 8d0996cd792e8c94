package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
)

// rpcCounter counts the App Engine API calls (RPCs) one request makes, by
// service and method, so that the page can show what it cost. It sits
// between the app and the client library: appengine.WithAPICallFunc routes
// every call made with the request's context to count, which passes it on
// with appengine.APICall to wherever it would have gone (the API server
// named by API_HOST, in process or not), so it works whatever serves the
// calls.
type rpcCounter struct {
	mu     sync.Mutex
	order  []string // "service.Method", in the order of first use
	counts map[string]int
}

// countRPCs returns ctx with its API calls counted by the returned counter.
func countRPCs(ctx context.Context) (context.Context, *rpcCounter) {
	c := &rpcCounter{counts: make(map[string]int)}
	return appengine.WithAPICallFunc(ctx, c.call), c
}

func (c *rpcCounter) call(ctx context.Context, service, method string, in, out proto.Message) error {
	name := service + "." + method
	c.mu.Lock()
	if c.counts[name] == 0 {
		c.order = append(c.order, name)
	}
	c.counts[name]++
	c.mu.Unlock()
	return appengine.APICall(ctx, service, method, in, out)
}

// rpcSummary is what the page shows: "3 RPCs: memcache.Get,
// datastore_v3.Put, memcache.Set", and a machine-readable form for tests.
type rpcSummary struct {
	Text string // for people
	Data string // "name=count" pairs in order of first use, space-separated
}

func (c *rpcCounter) summary() rpcSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	var parts, data []string
	for _, name := range c.order {
		n := c.counts[name]
		total += n
		if n > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", name, n))
		} else {
			parts = append(parts, name)
		}
		data = append(data, fmt.Sprintf("%s=%d", name, n))
	}
	s := rpcSummary{Data: strings.Join(data, " ")}
	switch total {
	case 0:
		s.Text = "no RPC"
	case 1:
		s.Text = "1 RPC: " + parts[0]
	default:
		s.Text = fmt.Sprintf("%d RPCs: %s", total, strings.Join(parts, ", "))
	}
	return s
}
