package main

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/golang/protobuf/proto"
	"github.com/icza/gaesession/v2/cloud/internal/rediscount"
	"google.golang.org/appengine/v2"
	"google.golang.org/grpc"
)

// tally counts the calls of one request by name, in the order of first
// use: Cloud Datastore RPCs (countGRPC) and App Engine API calls (for the
// bundled Memcache of -cache memcache and transition).
type tally struct {
	what   string // "Cloud Datastore RPC", "App Engine RPC"
	mu     sync.Mutex
	order  []string
	counts map[string]int
}

func newTally(what string) *tally { return &tally{what: what, counts: map[string]int{}} }

func (t *tally) add(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts[name] == 0 {
		t.order = append(t.order, name)
	}
	t.counts[name]++
}

// String is "2 Cloud Datastore RPCs: Lookup, Commit", or "no Cloud
// Datastore RPC".
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	total := 0
	var parts []string
	for _, name := range t.order {
		n := t.counts[name]
		total += n
		if n > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", name, n))
		} else {
			parts = append(parts, name)
		}
	}
	switch total {
	case 0:
		return "no " + t.what
	case 1:
		return "1 " + t.what + ": " + parts[0]
	}
	return fmt.Sprintf("%d %ss: %s", total, t.what, strings.Join(parts, ", "))
}

type tallyKey struct{}

// countGRPC is the Cloud Datastore client's interceptor: it counts each
// call in the tally of the call's context, if it has one.
func countGRPC(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if t, ok := ctx.Value(tallyKey{}).(*tally); ok {
		t.add(path.Base(method)) // "/google.datastore.v1.Datastore/Lookup"
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// requestCost is what one request sent where.
type requestCost struct {
	redis     *rediscount.Counter
	datastore *tally
	appengine *tally
}

// counted returns ctx with every call counted: Redis commands, Cloud
// Datastore RPCs, App Engine API calls (passed on with appengine.APICall
// to aelocal, wherever the context sends them).
func counted(ctx context.Context) (context.Context, *requestCost) {
	c := &requestCost{datastore: newTally("Cloud Datastore RPC"), appengine: newTally("App Engine RPC")}
	ctx, c.redis = rediscount.WithCounter(ctx)
	ctx = context.WithValue(ctx, tallyKey{}, c.datastore)
	ctx = appengine.WithAPICallFunc(ctx, func(ctx context.Context, service, method string, in, out proto.Message) error {
		c.appengine.add(service + "." + method)
		return appengine.APICall(ctx, service, method, in, out)
	})
	return ctx, c
}

// String is the request's cost, as the page and the log show it.
func (c *requestCost) String() string {
	s := c.redis.String() + "; " + c.datastore.String()
	if a := c.appengine.String(); !strings.HasPrefix(a, "no ") {
		s += "; " + a
	}
	return s
}
