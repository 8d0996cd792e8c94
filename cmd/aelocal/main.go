// Command aelocal runs a local App Engine API server (memcache and
// datastore_v3) that speaks the service-bridge protocol of App Engine's
// second-generation runtimes.
//
// Start it, then run an unchanged App Engine Go app with the environment
// lines it prints:
//
//	go run github.com/icza/gaesession/v2/cmd/aelocal
//	export API_HOST=127.0.0.1 API_PORT=10001 GAE_APPLICATION=dev~aelocal
//
// Flags:
//
//	-addr            host:port to listen on (default 127.0.0.1:10001, the
//	                 App Engine client's default API port)
//	-datastore_path  file that keeps the datastore across restarts (default:
//	                 none, in memory only). It is loaded before the server
//	                 answers anything, and every write is on disk before
//	                 the call that made it is answered, so an acknowledged
//	                 write survives kill -9, a crash or closing the terminal.
//	-memcache_limit  memcache memory cap in bytes (namespaces, keys, values
//	                 and a per-item overhead); LRU items are evicted past it
//	-allowed_hosts   comma-separated host names, besides loopback ones, that
//	                 requests may name in their Host header (for a server
//	                 reached by another name, from a container say)
//
// SIGINT, SIGTERM and SIGHUP stop the server gracefully: calls in progress
// are answered, then the datastore file is closed. A second signal ends the
// process at once, which loses nothing: what was acknowledged is on disk.
//
// GET / on the server shows the RPC counts served so far.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
)

// shutdownTimeout bounds the wait for calls in progress at shutdown.
const shutdownTimeout = 10 * time.Second

// config is what the flags set.
type config struct {
	addr          string
	datastorePath string
	memcacheLimit int64
	allowedHosts  []string
}

func main() {
	var c config
	var allowed string
	flag.StringVar(&c.addr, "addr", "127.0.0.1:10001", "host:port to listen on")
	flag.StringVar(&c.datastorePath, "datastore_path", "", "file that keeps the datastore across restarts; every acknowledged write is on disk (empty: in memory only)")
	flag.Int64Var(&c.memcacheLimit, "memcache_limit", aelocal.DefaultMemcacheLimit, "memcache memory cap in bytes (namespaces, keys, values and per-item overhead)")
	flag.StringVar(&allowed, "allowed_hosts", "", "comma-separated host names, besides loopback ones, that requests may name in their Host header")
	flag.Parse()
	if allowed != "" {
		c.allowedHosts = strings.Split(allowed, ",")
	}
	log.SetFlags(0)
	log.SetPrefix("aelocal: ")

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		log.Printf("%v: shutting down (send it again to exit at once)", sig)
		cancel()
		sig = <-sigs
		// Safe: every write that was answered is synced to the datastore
		// file already; a rewrite in progress leaves a temporary file that
		// the next start removes.
		log.Printf("%v again: exiting at once", sig)
		os.Exit(1)
	}()
	if err := run(ctx, c, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx is done, then shuts down gracefully. ready, if not
// nil, is called once the server answers.
func run(ctx context.Context, c config, ready func(*aelocal.Server)) error {
	if c.datastorePath != "" {
		log.Printf("loading the datastore from %s", c.datastorePath)
	}
	start := time.Now()
	s, err := aelocal.NewServerOptions(&aelocal.Options{
		Addr:          c.addr,
		MemcacheLimit: c.memcacheLimit,
		DatastorePath: c.datastorePath,
		AllowedHosts:  c.allowedHosts,
	})
	if err != nil {
		return err
	}
	if c.datastorePath != "" {
		log.Printf("datastore loaded in %v; every acknowledged write is kept in %s", time.Since(start).Round(time.Millisecond), c.datastorePath)
	}

	host, port := s.Addr()
	fmt.Printf("aelocal: App Engine API server (memcache, datastore_v3) at %s\n", s.URL())
	fmt.Printf("export API_HOST=%s API_PORT=%s GAE_APPLICATION=%s\n", host, port, os.Getenv("GAE_APPLICATION"))

	if ready != nil {
		ready(s)
	}
	<-ctx.Done()

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = s.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Printf("calls still in progress after %v: closing their connections", shutdownTimeout)
		err = s.Close()
	}
	if err != nil {
		return err
	}
	if c.datastorePath != "" {
		log.Printf("datastore file %s closed", c.datastorePath)
	}
	return nil
}
