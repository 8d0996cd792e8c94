/*
Package aelocal is a local App Engine API server for tests and local
development: it serves the memcache and datastore_v3 services behind the
HTTP service bridge that App Engine's second-generation runtimes use, so
the real google.golang.org/appengine/v2 client talks to it unchanged.

Google's dev_appserver no longer runs Go apps, which leaves aetest without a
backend. aelocal replaces it for memcache and the datastore, in-process and
with no Cloud SDK.

# In tests

RunT starts a server that the test closes when it ends. Middleware routes
a handler's App Engine calls to it, and NewRequest builds a request whose
context is already an App Engine context:

	srv := aelocal.RunT(t)

	rec := httptest.NewRecorder()
	srv.Middleware(myHandler).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))

	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")})

Each request's context names its server, as aetest's requests do, and the
calls travel over the server's loopback bridge: so tests running in
parallel with servers of their own do not interfere, and transactions
behave exactly as on App Engine. appengine/v2/log works inside such
handlers too.

Tests can look at and steer the server: Stats counts the RPCs served by
"service.Method" (the way to assert that code makes no more calls than it
should), MemcacheItem and Entities read stored state without a client or
an RPC, FailNext makes the next calls fail with a service error,
SetLatency delays a service or one method, FlushMemcache empties memcache
as an eviction would, and FastForward moves the clock that memcache
expiry and transaction time limits are judged by.

# With aetest

Command github.com/icza/gaesession/v2/cmd/aelocal, given dev_appserver's
flags, is the program aetest starts in place of dev_appserver.py, so an
existing aetest suite runs unchanged:

	go install github.com/icza/gaesession/v2/cmd/aelocal@latest
	APPENGINE_DEV_APPSERVER_BINARY=$(go env GOPATH)/bin/aelocal go test ./...

(appengine v1.6.8 reads APPENGINE_DEV_APPSERVER instead.)

# appengine v1

Route routes a context of the v1 client (google.golang.org/appengine,
from 1.6.8 on) as Middleware does: srv.Route(ctx, appengine.APICall). Call
has the signature of v1's (and v2's) appengine.APICallFunc and serves
calls in-process, except transactions, which the client hides from such a
function: appengine.WithAPICallFunc(ctx, srv.Call). A binary that links v1
and aelocal must run with GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn, since
both clients register protobuf files of the same names.

# As a server

An app that reads API_HOST and API_PORT, as every appengine/v2 app does,
reaches a Server over HTTP at URL()+"/rpc_http", exactly as it reaches App
Engine's service bridge. Command github.com/icza/gaesession/v2/cmd/aelocal
runs one on 127.0.0.1:10001, the client's default port:

	go run github.com/icza/gaesession/v2/cmd/aelocal
	API_HOST=127.0.0.1 API_PORT=10001 go run ./myapp

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

Transactions are isolated until commit and roll back on error or panic;
their reads (Get and ancestor queries) see one snapshot of the datastore,
taken at BeginTransaction; a commit after another write to an entity group
the transaction used fails with CONCURRENT_TRANSACTION, which
RunInTransaction retries; read-only transactions never conflict; up to 25
entity groups with XG. A transaction idle for 60 seconds, or begun 270
seconds ago, has expired, by the server's clock.
*/
package aelocal
