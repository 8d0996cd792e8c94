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

# Keeping the datastore

With Options.DatastorePath (cmd/aelocal's -datastore_path) the datastore
lives in a file as well as in memory, and that file is what it promises:

  - Loaded first: NewServerOptions reads the whole file before the server
    answers anything; connections made meanwhile wait. A path whose
    directory is missing or not writable is refused at once.
  - Every acknowledged write is on disk: a write (Put, Delete, a
    transaction's Commit, AllocateIds) is answered only after it is synced
    to the file, so it survives kill -9, a crash, a panic or a closed
    terminal. Concurrent writes share a sync (group commit).
  - Checked: every record carries a CRC-32C checksum. A file that fails one
    is refused with a *CorruptFileError naming the offset, and left as it
    is. The only damage accepted is a last record cut short by a kill,
    which was never acknowledged; it is dropped.
  - Bounded: the file is an append-only log behind a snapshot, rewritten
    (compacted) in the background once the log outgrows the snapshot.
    Snapshots stream the entities, so they take no copy of the data in
    memory. A rewrite interrupted by a kill leaves a temporary file
    beside the datastore file, which the next start removes.
  - Exclusive: a second server on the same file is refused (on Unix).

Memcache is not kept, as on App Engine, where it may be emptied at any
time. SaveDatastore and LoadDatastore write and read the same format
(LoadDatastore also reads the gob files of earlier versions).

# Safety

A web page in the developer's browser can reach loopback addresses too, so
the server refuses what a page can send: a service bridge call must carry
the headers App Engine's clients send (X-Google-RPC-Service-Endpoint and
-Method, Content-Type application/octet-stream) and no Origin header, and
every request, status page included, must name a loopback host or one of
Options.AllowedHosts in its Host header, which defeats DNS rebinding.
Bridge calls are served on any path, as older v1 clients post to the URL
they were given. Request bodies in flight share a byte budget, idle
connections are closed after two minutes, connections are capped, and only
implemented methods get a counter of their own in Stats.

# Fidelity

Memcache follows the production service as the appengine/v2 client
describes it: keys up to 250 bytes, values up to 1,000,000 bytes (larger
ones fail the call with INVALID_VALUE), expiry 0 for never, relative
seconds below 30 years and absolute Unix times above, compare-and-swap,
namespaces (checked against App Engine's rule: up to 100 of the characters
0-9 A-Z a-z . _ -), and least-recently-used eviction under a memory cap
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
