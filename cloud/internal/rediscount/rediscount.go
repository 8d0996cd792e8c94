// Package rediscount counts the Redis commands and round trips that calls
// made with one context send, through a go-redis hook: what the demo shows
// under each page and what the benchmarks report per request, as the
// bundled store's figures count App Engine RPCs.
package rediscount

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Counter counts the commands of the calls made with a context from
// WithCounter, by name, and their round trips (a pipeline is one).
type Counter struct {
	mu     sync.Mutex
	order  []string // command names, in the order of first use
	counts map[string]int
	trips  int
}

type ctxKey struct{}

// WithCounter returns ctx with a new Counter, which the hook of every
// client with Hook added fills for the calls made with ctx.
func WithCounter(ctx context.Context) (context.Context, *Counter) {
	c := &Counter{counts: map[string]int{}}
	return context.WithValue(ctx, ctxKey{}, c), c
}

// Hook counts commands into the Counter of each call's context; add it
// with client.AddHook(rediscount.Hook{}). Calls whose context has no
// Counter pass through.
type Hook struct{}

var _ redis.Hook = Hook{}

// DialHook passes dials through.
func (Hook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook counts one command, one round trip.
func (Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if c, ok := ctx.Value(ctxKey{}).(*Counter); ok {
			c.add(cmd)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts a pipeline's commands, one round trip.
func (Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if c, ok := ctx.Value(ctxKey{}).(*Counter); ok {
			c.add(cmds...)
		}
		return next(ctx, cmds)
	}
}

func (c *Counter) add(cmds ...redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips++
	for _, cmd := range cmds {
		name := strings.ToUpper(cmd.Name())
		if c.counts[name] == 0 {
			c.order = append(c.order, name)
		}
		c.counts[name]++
	}
}

// Commands returns how many commands of each name were sent.
func (c *Counter) Commands() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		m[k] = v
	}
	return m
}

// RoundTrips returns how many round trips the commands took.
func (c *Counter) RoundTrips() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips
}

// String is what the demo shows: "2 Redis commands in 2 round trips:
// HMGET, EVALSHA", or "no Redis command".
func (c *Counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	parts := make([]string, 0, len(c.order))
	for _, name := range c.order {
		n := c.counts[name]
		total += n
		if n > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", name, n))
		} else {
			parts = append(parts, name)
		}
	}
	switch {
	case total == 0:
		return "no Redis command"
	case total == 1:
		return "1 Redis command: " + parts[0]
	}
	trips := "1 round trip"
	if c.trips != 1 {
		trips = fmt.Sprintf("%d round trips", c.trips)
	}
	return fmt.Sprintf("%d Redis commands in %s: %s", total, trips, strings.Join(parts, ", "))
}
