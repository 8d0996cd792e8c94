package aelocal

import (
	"fmt"
	"net"
	"time"
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

	// DatastorePath, if set, is the file that keeps the datastore across
	// restarts. NewServerOptions loads it (or creates it) before the
	// server answers anything, and refuses a path it could not keep
	// writing to, or a file that fails a checksum. From then on every
	// write is on disk before its call is answered: an acknowledged write
	// survives kill -9, a crash or a panic. See SaveDatastore for the
	// format; LoadDatastore also reads files of older aelocal versions.
	DatastorePath string

	// AllowedHosts are host names (or IP addresses), besides loopback
	// ones, that requests may name in their Host header, for a server
	// reached by another name, say from a container. Ports are ignored.
	// Requests naming any other host are refused, so that a web page
	// cannot reach the server through DNS rebinding.
	AllowedHosts []string

	// Front-door limits; tests shorten them. Zero means the default.
	idleTimeout time.Duration
	bodyTimeout time.Duration
	maxConns    int
	bodyBudget  int64
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
