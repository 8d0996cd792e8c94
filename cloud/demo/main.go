/*
Command demo is the session demo on the Cloud store
(github.com/icza/gaesession/v2/cloud): log in, refresh, watch a counter in
the session go up, log out; under each page, the Redis commands and the
Cloud Datastore RPCs the request made. From the repository's root:

	go -C cloud run ./demo

It needs nothing but Go: Redis is an embedded miniredis (or, with -redis
ADDR, a Redis server of yours, such as a local redis-server), and the
Cloud Datastore is aelocal's Cloud Datastore API, in process, reached by
an unchanged cloud.google.com/go/datastore client. -cache picks the
store's cache: redis (the default), transition (Redis and App Engine's
bundled Memcache at once: step b of README's "Moving off the bundled
services"), memcache (step a) or none.

It listens on 127.0.0.1:PORT (default 8080) only and answers only requests
addressed to localhost or a loopback address; login and logout happen on
POST only, from this site's own pages. It is the root's
_gae_session_demo, smaller, on other tiers; that one is in the root
module, which must not depend on go-redis or the Cloud client.
*/
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"cloud.google.com/go/datastore"
	"github.com/alicebob/miniredis/v2"
	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/cloud"
	"github.com/icza/gaesession/v2/cloud/internal/rediscount"
	"github.com/redis/go-redis/v9"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("cloud demo: ")
	cacheName := flag.String("cache", "redis", "the store's cache: redis, transition, memcache or none")
	redisAddr := flag.String("redis", "", "host:port of a Redis server; empty: an embedded one (miniredis)")
	flag.Parse()

	a, err := newApp(*cacheName, *redisAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer a.close()

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("open http://localhost:%s/demo", port)
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

// app is the demo's state: its Redis client, aelocal (App Engine's
// bundled services and the Cloud Datastore API), the Cloud Datastore
// client, and the store's cache.
type app struct {
	redis     *redis.Client
	redisName string
	mini      *miniredis.Miniredis // nil with -redis
	ae        *aelocal.Server
	ds        *datastore.Client
	cache     cloud.Cache
	cacheName string
}

// newApp starts what the demo talks to.
func newApp(cacheName, redisAddr string) (*app, error) {
	a := &app{cacheName: cacheName}
	ok := false
	defer func() {
		if !ok {
			a.close()
		}
	}()
	if redisAddr == "" {
		m, err := miniredis.Run() // listens on 127.0.0.1 only
		if err != nil {
			return nil, fmt.Errorf("starting the embedded Redis: %v", err)
		}
		a.mini, redisAddr = m, m.Addr()
		a.redisName = "embedded (miniredis) at " + redisAddr
	} else {
		a.redisName = redisAddr
	}
	a.redis = redis.NewClient(&redis.Options{Addr: redisAddr, ReadTimeout: time.Second, WriteTimeout: time.Second})
	a.redis.AddHook(rediscount.Hook{})

	ae, err := aelocal.NewServerOptions(&aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, fmt.Errorf("starting aelocal: %v", err)
	}
	a.ae = ae
	// The client finds the API as it finds Google's emulator.
	os.Setenv("DATASTORE_EMULATOR_HOST", ae.CloudDatastoreAddr())
	a.ds, err = datastore.NewClient(context.Background(), ae.CloudProjectID(),
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(countGRPC)))
	if err != nil {
		return nil, fmt.Errorf("the Cloud Datastore client: %v", err)
	}

	switch cacheName {
	case "redis":
		a.cache = cloud.Redis(a.redis)
	case "transition":
		a.cache = cloud.Transition(a.redis)
	case "memcache":
		a.cache = cloud.Memcache()
	case "none":
	default:
		return nil, fmt.Errorf("-cache %q: want redis, transition, memcache or none", cacheName)
	}
	log.Printf("Redis: %s; Cloud Datastore API (aelocal, in process): %s; cache: %s", a.redisName, ae.CloudDatastoreAddr(), cacheName)
	ok = true
	return a, nil
}

func (a *app) close() {
	if a.ds != nil {
		a.ds.Close()
	}
	if a.redis != nil {
		a.redis.Close()
	}
	if a.ae != nil {
		a.ae.Close()
	}
	if a.mini != nil {
		a.mini.Close()
	}
}
