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
//	-datastore_path  file that keeps the datastore across restarts; loaded
//	                 at start, written on SIGINT/SIGTERM (default: none)
//	-memcache_limit  memcache memory cap in bytes; LRU items are evicted past it
//
// GET / on the server shows the RPC counts served so far.
//
// Given dev_appserver.py's flags (--api_port, --admin_port, ...), aelocal
// is the dev_appserver that aetest starts: point
// APPENGINE_DEV_APPSERVER_BINARY (and, for appengine v1.6.8,
// APPENGINE_DEV_APPSERVER) at it and run an unchanged aetest suite. See
// devappserver.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/icza/gaesession/v2/aelocal"
)

func main() {
	if isDevAppserver(os.Args[1:]) {
		os.Exit(devAppserverMain(os.Args[1:]))
	}
	addr := flag.String("addr", "127.0.0.1:10001", "host:port to listen on")
	dsPath := flag.String("datastore_path", "", "file that keeps the datastore across restarts (empty: in memory only)")
	mcLimit := flag.Int64("memcache_limit", aelocal.DefaultMemcacheLimit, "memcache memory cap in bytes")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("aelocal: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *dsPath, *mcLimit, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx is done, then saves the datastore. ready, if not
// nil, is called once the server is up.
func run(ctx context.Context, addr, dsPath string, mcLimit int64, ready func(*aelocal.Server)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s, err := aelocal.Serve(ln)
	if err != nil {
		return err
	}
	s.SetMemcacheLimit(mcLimit)
	if dsPath != "" {
		if err := load(s, dsPath); err != nil {
			s.Close()
			return err
		}
	}

	host, port := s.Addr()
	fmt.Printf("aelocal: App Engine API server (memcache, datastore_v3) at %s\n", s.URL())
	fmt.Printf("export API_HOST=%s API_PORT=%s GAE_APPLICATION=%s\n", host, port, os.Getenv("GAE_APPLICATION"))

	if ready != nil {
		ready(s)
	}
	<-ctx.Done()

	s.Close()
	if dsPath != "" {
		if err := save(s, dsPath); err != nil {
			return err
		}
		log.Printf("datastore saved to %s", dsPath)
	}
	return nil
}

func load(s *aelocal.Server, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.LoadDatastore(f); err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	return nil
}

// save writes to a temporary file first, so a failed save never leaves a
// truncated datastore behind.
func save(s *aelocal.Server, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := s.SaveDatastore(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
