package aelocal

import (
	"fmt"
	"net"
)

// Options configures a Server started with NewServerOptions. Every field is
// optional; the zero value starts what NewServer starts: a server on
// 127.0.0.1 at a free port that keeps everything in memory.
type Options struct {
	// Addr is the host:port to listen on; default "127.0.0.1:0", a free
	// port on the loopback interface.
	Addr string

	// MemcacheLimit is the memcache memory cap in bytes; default
	// DefaultMemcacheLimit. See SetMemcacheLimit.
	MemcacheLimit int64

	// QueueYAML is the path of the app's queue.yaml. Its queues exist
	// from the start, with their modes, rates, bucket sizes and retry
	// parameters; a "default" push queue exists whether or not the file
	// declares it. Empty: only the default queue. NewServerOptions fails
	// on a file production would refuse to deploy.
	QueueYAML string

	// AppURL is the app's base URL, for example http://127.0.0.1:8080.
	// When set, the server sends due push tasks to it by itself, at each
	// queue's rate, as dev_appserver did, and relative continue URLs of
	// user.LoginURL and user.LogoutURL are resolved against it; the
	// console's cron page sends the jobs it runs there. Empty: tasks wait
	// for RunTasks, and cron jobs cannot be run.
	AppURL string

	// CronYAML is the path of the app's cron.yaml. The console's cron page
	// lists its jobs and runs one on request; NewServerOptions fails if the
	// file cannot be read or parsed.
	CronYAML string
}

// NewServerOptions starts a Server configured by o; nil o means the
// defaults, as NewServer.
func NewServerOptions(o *Options) (*Server, error) {
	if o == nil {
		o = &Options{}
	}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("aelocal: listen: %w", err)
	}
	return serve(ln, o)
}
