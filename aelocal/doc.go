/*
Package aelocal is a local App Engine API server for tests and local
development: it serves the memcache and datastore_v3 services behind the
HTTP service bridge that App Engine's second-generation runtimes use, so
the real google.golang.org/appengine/v2 client talks to it unchanged.

Google's dev_appserver no longer runs Go apps, which leaves aetest without a
backend. aelocal replaces it for memcache and the datastore, in-process and
with no Cloud SDK.

# In tests

Start a server per test and route a handler's App Engine calls to it with
Middleware, or build a request whose context is already an App Engine
context with NewRequest:

	srv, err := aelocal.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	rec := httptest.NewRecorder()
	srv.Middleware(myHandler).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))

	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")})

Routing travels in each request's context, so tests running in parallel
with servers of their own do not interfere. appengine/v2/log works inside
such handlers too.

Tests can look at and steer the server: Stats counts the RPCs served by
"service.Method" (the way to assert that code makes no more calls than it
should), FailNext makes the next calls fail with a service error,
SetLatency delays a service or one method, FlushMemcache empties memcache
as an eviction would, and FastForward moves the clock that memcache
expiry is judged by.

# As a server

An app that reads API_HOST and API_PORT, as every appengine/v2 app does,
reaches a Server over HTTP at URL()+"/rpc_http", exactly as it reaches App
Engine's service bridge. Command github.com/icza/gaesession/v2/cmd/aelocal
runs one on 127.0.0.1:10001, the client's default port:

	go run github.com/icza/gaesession/v2/cmd/aelocal
	API_HOST=127.0.0.1 API_PORT=10001 go run ./myapp

# The console

Every Server serves a console at its root, URL()+"/", for a person: the
datastore (namespaces, kinds with counts, a kind's entities in pages,
sorted and filtered; an entity's typed properties; edit, create, delete),
memcache (statistics, look up, delete, flush), the RPCs served (counts and
the latest calls with their duration and outcome) and the cron jobs of
Options.CronYAML, run on request against Options.AppURL. It is plain
server-rendered HTML; no GET changes anything and every form is protected
against cross-site requests. The console calls the services as an app
would, but its calls do not count in Stats.

# Fidelity

Memcache follows the production service as the appengine/v2 client
describes it: keys up to 250 bytes, values up to 1,000,000 bytes (larger
ones fail the call with INVALID_VALUE), expiry 0 for never, relative
seconds below 30 years and absolute Unix times above, compare-and-swap,
namespaces, and least-recently-used eviction under a memory cap
(SetMemcacheLimit).

The datastore is strongly consistent and keeps entities in memory: Get, Put
and Delete of up to 500 keys, queries with kind, ancestor, equality and
inequality filters, sort orders, limit, offset, keys-only and cursors,
AllocateIds and transactions. Entities are limited to 1,048,572 bytes and
key names to 1,500 bytes. Features it does not implement answer with an
error that says so; an unknown service or method answers "not implemented
by aelocal: service.Method". No request, however malformed, stops the
server.

One difference of routing: under Middleware and NewRequest, calls are
handed over in-process before appengine/v2 attaches the current
transaction to them, so writes inside datastore.RunInTransaction apply
at once. Code whose correctness depends on transactions should be tested
through the HTTP bridge (API_HOST and API_PORT).
*/
package aelocal
