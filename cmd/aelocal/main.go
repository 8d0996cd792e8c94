// Command aelocal runs a local App Engine API server (memcache, the
// datastore, task queues, mail, users, URL fetch, app identity, modules and
// capabilities) that speaks the service-bridge protocol of App Engine's
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
//	-queue_yaml      the app's queue.yaml: its queues exist from the start (a
//	                 "default" queue always does)
//	-app_url         the app's base URL, such as http://127.0.0.1:8080: due
//	                 push tasks are sent to it at each queue's rate, as
//	                 dev_appserver did (default: none; tasks wait), and the
//	                 console's cron page runs jobs there
//	-cron_yaml       the app's cron.yaml: the console lists its jobs and runs
//	                 one on request, sending it to -app_url
//
// The server's root, http://127.0.0.1:10001/, is a console in the browser:
// the datastore (browse, edit, create, delete), memcache, the RPCs served,
// the cron jobs, the task queues and the mail kept. user.LoginURL points at
// its /_ah/login page.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/icza/gaesession/v2/aelocal"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:10001", "host:port to listen on")
	dsPath := flag.String("datastore_path", "", "file that keeps the datastore across restarts (empty: in memory only)")
	mcLimit := flag.Int64("memcache_limit", aelocal.DefaultMemcacheLimit, "memcache memory cap in bytes")
	queueYAML := flag.String("queue_yaml", "", "the app's queue.yaml (empty: only the default queue)")
	appURL := flag.String("app_url", "", "the app's base URL, e.g. http://127.0.0.1:8080; push tasks and the console's cron runs are sent there (empty: tasks wait)")
	cronYAML := flag.String("cron_yaml", "", "the app's cron.yaml, whose jobs the console lists and runs")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("aelocal: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := aelocal.Options{Addr: *addr, MemcacheLimit: *mcLimit, QueueYAML: *queueYAML, AppURL: *appURL, CronYAML: *cronYAML}
	if err := run(ctx, opts, *dsPath, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx is done, then saves the datastore. ready, if not
// nil, is called once the server is up.
func run(ctx context.Context, opts aelocal.Options, dsPath string, ready func(*aelocal.Server)) error {
	s, err := aelocal.NewServerOptions(&opts)
	if err != nil {
		return err
	}
	if dsPath != "" {
		if err := load(s, dsPath); err != nil {
			s.Close()
			return err
		}
	}

	host, port := s.Addr()
	fmt.Printf("aelocal: App Engine API server at %s\n", s.URL())
	fmt.Printf("export API_HOST=%s API_PORT=%s GAE_APPLICATION=%s\n", host, port, os.Getenv("GAE_APPLICATION"))
	fmt.Printf("aelocal: console at %s/\n", s.URL())
	if opts.AppURL != "" {
		fmt.Printf("aelocal: push tasks go to %s\n", opts.AppURL)
	}

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
