/*
Package aelocal is a local App Engine API server for tests and local
development: it serves App Engine's bundled services (memcache, the
datastore, task queues, mail, users, URL fetch, app identity, modules,
capabilities, search, blobstore, images, request logs and background
requests) behind the HTTP service bridge that App Engine's
second-generation runtimes use, so the real google.golang.org/appengine/v2
client talks to it unchanged.

Google's dev_appserver no longer runs Go apps, which leaves aetest without a
backend. aelocal replaces it, in-process and with no Cloud SDK.

# In tests

RunT starts a server that the test closes when it ends. Middleware routes
a handler's App Engine calls to it, and NewRequest builds a request whose
context is already an App Engine context:

	srv := aelocal.RunT(t)

	rec := httptest.NewRecorder()
	srv.Middleware(http.HandlerFunc(myHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))

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
expiry, task ETAs and retries, and transaction time limits are judged by.

Tasks lists the tasks waiting in a queue, RunTasks sends the due ones to a
handler as App Engine would and keeps the failed ones for their retry, and
Mail returns the messages the app sent:

	taskqueue.Add(ctx, taskqueue.NewPOSTTask("/work", nil), "")
	n, err := srv.RunTasks("", http.HandlerFunc(work)) // appengine.NewContext works inside
	srv.FastForward(time.Minute)                        // failed tasks come due again
	msgs := srv.Mail()

# With aetest

Command github.com/icza/gaesession/v2/cmd/aelocal, given dev_appserver's
flags, is the program aetest starts in place of dev_appserver.py, so an
existing aetest suite runs unchanged. From the app's module, whose go.mod
points github.com/icza/gaesession/v2 at this code with a replace line:

	go install github.com/icza/gaesession/v2/cmd/aelocal
	export APPENGINE_DEV_APPSERVER_BINARY=$(go env GOPATH)/bin/aelocal
	export APPENGINE_DEV_APPSERVER=$(go env GOPATH)/bin/aelocal
	go test ./...

(appengine/v2 starts the program APPENGINE_DEV_APPSERVER_BINARY names,
v1.6.8 the one APPENGINE_DEV_APPSERVER names.) Give no @version: go
install of a version ignores replace lines and fetches the original
module, which has no cmd/aelocal.

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
runs one on 127.0.0.1:10001, the client's default port; from the app's
module, in two terminals:

	go run github.com/icza/gaesession/v2/cmd/aelocal
	API_HOST=127.0.0.1 API_PORT=10001 GAE_APPLICATION=dev~aelocal go run .

The app needs GAE_APPLICATION too: without it the App Engine client asks
a Google Cloud metadata server for the app's ID and fails ("Metadata fetch
failed for 'instance/attributes/gae_project'") before calling the server.

Given the app's address (Options.AppURL, flag -app_url) the server sends
due push tasks to the app by itself, at each queue's rate from queue.yaml
(Options.QueueYAML, flag -queue_yaml), as dev_appserver did.

With Options.FrontAddr (flag -front_addr) the server also stands before
the app as App Engine's front end does, on a loopback port of its own
(FrontURL): it passes each request on with the X-AppEngine-* headers the
request brought removed and those of the user the login page signed in
added, and serves /_ah/login and /_ah/logout there. That is how an app run
on its own sees the signed-in user.

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
  - One file for the server's life: the path is resolved once, at start.
    A symbolic link is followed to its target (the log says so), which is
    the file locked, appended to and rewritten from then on; a link to
    nothing is refused with a message that says so.
  - A refused write changes nothing: once a write to the file has failed,
    every later write (Put, Delete, Commit, AllocateIds) fails with
    INTERNAL_ERROR before it changes anything, in memory or on disk, and
    reads go on until a restart. The writes whose sync failed were already
    visible; like production's INTERNAL_ERROR, their outcome is unknown.

Memcache is not kept, as on App Engine, where it may be emptied at any
time. SaveDatastore and LoadDatastore write and read the same format
(LoadDatastore also reads the gob files of earlier versions). A stream
given to LoadDatastore must be whole: one that ends inside a record is
refused, as a torn tail is forgiven only in the server's own file.

# The Cloud Datastore API

With Options.CloudDatastoreAddr the server also serves the Cloud Datastore
API (google.datastore.v1 over gRPC, what cloud.google.com/go/datastore
speaks) on a port of its own, over the same datastore as datastore_v3, as
production serves both APIs from one Firestore in Datastore mode database.
An unchanged Cloud client reaches it with DATASTORE_EMULATOR_HOST set to
CloudDatastoreAddr and DATASTORE_PROJECT_ID to CloudProjectID (the app ID
without its "dev~" or "s~" prefix):

	srv := aelocal.RunTOptions(t, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	t.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
	t.Setenv("DATASTORE_PROJECT_ID", srv.CloudProjectID())

The API is a thin adapter over the engine datastore_v3 uses: keys and
values convert as Google's own converter converts them (the Python SDK's
datastore_pbs.py), and entities, IDs, transactions and their conflicts,
queries and the composite-index record, the datastore file, Stats and the
RPC log ("cloud_datastore_v1.Method") are shared. The port also answers
the HTTP requests scripts send Google's emulator: GET / ("Ok"), POST
/reset (empties the datastore) and POST /shutdown (closes
ShutdownRequested; the aelocal command then exits), the POSTs refused from
web pages.

Its queries run on the same engine, with Firestore in Datastore mode's
filters and aggregations:

  - IN, NOT_IN, != and OR (of any AND and OR nesting) filters, with
    production's rules: at most 30 disjunctions in the filter's
    disjunctive normal form (IN counts a disjunction a value), non-empty
    IN and NOT_IN lists, at most 10 NOT_IN values, one NOT_IN or != per
    query, NOT_IN with no IN, OR or !=, and != and NOT_IN being
    inequalities on their property (the first sort order, if any, must be
    on it; at most one inequality property). An entity matches != v or
    NOT_IN a list if it has an indexed value (null included) outside
    them; one without an indexed value of the property never matches.
  - Each disjunction reads its own index range and the reads are merged
    in the query's order, each entity once, so a limit-20 query reads
    about 20 entries a disjunction and cursors resume anywhere in it; a
    distinct_on query keeps each combination's first result, whichever
    disjunction gives it, and its cursor resumes after the combination.
  - RunAggregationQuery: one to five COUNT, COUNT_UP_TO, SUM and AVG
    (default aliases property_1, property_2, ...) over a query with its
    filters, offset, limit and cursors, in or out of a transaction. SUM
    and AVG take the integers and doubles of a property of one indexed
    value; SUM stays an integer unless a double or an overflow makes it
    one, and is 0 over nothing, where AVG is null. A count reads index
    entries only, where the planner answers the query.

# Safety

A web page in the developer's browser can reach loopback addresses too, so
the server refuses what a page can send: a service bridge call must carry
the headers App Engine's clients send (X-Google-RPC-Service-Endpoint and
-Method, Content-Type application/octet-stream) and no Origin header, and
every request, console pages included, must name a loopback host or one of
Options.AllowedHosts in its Host header, which defeats DNS rebinding.
Bridge calls are served on any path, as older v1 clients post to the URL
they were given. Request bodies in flight share a byte budget, idle
connections are closed after two minutes, connections are capped, and only
implemented methods get a counter of their own in Stats.

# The console

Every Server serves a console at its root, URL()+"/", for a person: the
datastore (namespaces, kinds with counts, a kind's entities in pages,
sorted and filtered, with columns a person picks; an entity's typed
properties, long values cut; edit, create, delete),
memcache (statistics, look up, delete, flush), the task queues (a queue's
tasks in pages; run a push task now against Options.AppURL, delete one,
purge a queue), the mail sent (newest first, bodies shown as text,
attachments by name and size), the cron jobs of Options.CronYAML, run on
request against Options.AppURL, and the RPCs served (counts and failures
per method, and the latest calls with their duration and outcome). It is plain
server-rendered HTML; no GET changes anything and every form is protected
against cross-site requests. The console calls the services as an app
would, but its calls do not count in Stats, and its queries neither need
nor record composite indexes.

# Fidelity

aelocal answers as production does. Where behaviour is in question,
Google's reference stubs (the Python SDK's memcache_stub.py,
datastore_file_stub.py, datastore_stub_util.py, datastore_index.py) decide,
unless production documents otherwise; the code says where it departs
from them and why.

Memcache: keys up to 250 bytes (a longer one fails the call with
INVALID_VALUE); an item is stored while its key, its value and 73 bytes of
overhead fit in 1 MiB, as in production, and a bigger one fails alone, with
status ERROR (ErrServerError, within a MultiError from SetMulti). Expiry 0
is never, relative seconds below 30 years and absolute Unix times above;
compare-and-swap, delete locks, namespaces (App Engine's rule: up to 100
of the characters 0-9 A-Z a-z . _ -; others fail with INVALID_VALUE), peeks, Stats (byte_hits counts
keys and values of hits) and least-recently-used eviction under a memory
cap (SetMemcacheLimit).

Datastore: strongly consistent and in memory: Get, Put and Delete of up to
500 keys (Get 1,000), AllocateIds and transactions, and queries with kind,
ancestor, equality and inequality filters, sort orders, limit, offset,
keys-only, projections (one result per index entry: per value of a
multi-valued projected property, none for an entity whose projected
property is missing or unindexed, values as the index holds them),
Distinct and DistinctOn (whose properties sort before the other projected
ones, as production's index for the query has them), and the metadata
kinds __namespace__, __kind__ and __property__. Values sort as production's index encoding sorts them: NaN
above +Inf, so it never matches P < x. A cursor is a position between index
entries: it fits any query with the same sort properties, whatever their
directions, and an entity with several values of a sort property may come
again after one, as production documents. Entities are limited to
1,048,572 bytes, key names and indexed strings to 1,500 bytes, and
property names like __x__ are refused. Automatic IDs are scattered, as
production's default policy gives them, with dev_appserver's exact values;
AllocateIds gives sequential ones. Negative IDs are accepted, as in
production. Queries read sorted indexes kept on every write, as
production keeps them: the kind index, the built-in single-property
indexes, and the composite indexes index.yaml declares or queries needed
(recorded), with production's entry rules (an entry per combination of
values, per ancestor for ancestor indexes, none for unindexed values, an
entity past 20,000 entries in an index leaves it to the built-in ones).
Key order, equality filters (merge-joined without a composite index),
inequalities, sort orders, ancestors, projections, Distinct (which seeks
past each combination), queries of no kind (a merge of the kinds' key
indexes), offsets and Count read about as many index entries as they
return and skip, from their cursor on, whatever the kind's size, without
loading the entities they skip, and without making writes wait; queries
hold positions, not results. Without a composite index, two or more sort
orders read the first order's index and sort the ties of each of its
values. A query in a transaction reads its snapshot through the same
plans, at the same cost: the live indexes with the versions the snapshot
sees put back at the keys written since (a seek each), without making
writes wait; metadata queries read a snapshot of the namespaces, kinds
and single-property indexes (a seek per property and type), taken under
the lock, and are evaluated without it.

Transactions follow Firestore in Datastore mode, which is every App
Engine app's datastore today, point by point:

  - Isolated until commit, and rolled back on error or panic; reads (Get
    and queries) see one snapshot, taken at BeginTransaction, and
    not the transaction's own writes.
  - Conflicts come from what the transaction read: a commit fails with
    CONCURRENT_TRANSACTION (which RunInTransaction retries) if someone
    else wrote, since the snapshot, an entity it got (or found missing) or
    anything in the entity group of an ancestor query it ran (production
    tracks the query's range; the group is coarser, so aelocal may
    conflict where production would not, never the reverse). A blind
    write (a Put or Delete of a key it never read) never conflicts: the
    transaction's write lands last, as in production and the SDK's stub.
    Read-only transactions never conflict. Conflicts are found at commit
    (optimistic concurrency); a database in pessimistic mode makes the
    other writer wait for the lock instead.
  - One app per transaction, and one entity group unless it is
    cross-group (XG), as the App Engine API has it. No limit on the number
    of entity groups: Firestore removed Cloud Datastore's limit of 25
    (Options.LegacyEntityGroups restores it).
    Production's 10 MiB limit on a transaction applies to its
    writes (BAD_REQUEST "transaction too big").
  - A transaction idle for 60 seconds, or begun 270 seconds ago, has
    expired, by the server's clock.
  - Any query runs in a transaction, not only an ancestor query, as
    Firestore in Datastore mode allows (neither client refuses one). It
    reads the snapshot, and a commit conflicts if someone else wrote,
    since the snapshot, any entity of the query's kind in its namespace
    (of any kind, for a kindless query): production tracks the query's
    range, so aelocal may conflict where production would not, never the
    reverse. Such a query takes no entity group of a non-XG transaction.
    Metadata queries (__kind__ and the like) are refused in a transaction.
  - Options.LegacyEntityGroups (flag -legacy_entity_groups) gives both
    APIs the rules of a database in "optimistic with entity groups" mode
    (the legacy Datastore), point by point: only ancestor queries run in a
    transaction (BAD_REQUEST "only ancestor queries are allowed inside
    transactions"), and a cross-group transaction, every Cloud API one
    included, may use at most 25 entity groups (BAD_REQUEST "operating on
    too many entity groups in a single transaction."). It changes nothing
    else: queries stay strongly consistent (no eventually consistent
    non-ancestor queries), there is no write-rate limit per entity group,
    conflicts still come from what a transaction read, and the Cloud API's
    filters and limits stay Firestore's.
  - aelocal's own bounds, which production does not have: an open
    transaction's snapshot may keep at most Options.TxHistoryLimit
    (default 64 MiB) of entity versions that later writes replaced; past
    it, the transaction with the oldest snapshot expires, and its next
    call says why. A read set of more than 10,000 keys and groups is
    replaced by "anything written since the snapshot" (more conflicts,
    never fewer), and at most 10,000 transactions are open at once.

Composite indexes: every query's composite index, by production's rules,
is recorded; Server.IndexYAML returns them as index.yaml text, and
Options.WriteIndexYAML writes them to Options.IndexYAML as dev_appserver
did. With Options.RequireIndexes a query that needs an index the file does
not declare fails as in production: NEED_INDEX, with the entry to add.

Task queues check what production checks: queue and task names, a name
stays taken nine days after its task ran or was deleted, ETAs up to 30
days ahead, 100 KB push and 1 MB pull tasks, 100 tasks a call, five
transactional tasks a transaction; retries follow the task's or queue's
retry parameters. Mail checks addresses, bodies, attachments and headers as
production does and keeps the last 10,000 messages (at most 256 MiB);
none is delivered. user.LoginURL
and user.LogoutURL have dev_appserver's shapes, /_ah/login?continue=... and
/_ah/logout?continue=...; the login page signs anyone in, with no
password, the logout page asks before it signs out, and Middleware (or the
front end) gives later requests that user's headers, as aetest.Login
does. Its cookie is signed with the server's secret, so no other local page
can forge one, and both pages send the browser on only to the app's own
origins. URL fetch makes the request with the caller's deadline and
production's limits and error codes. App identity signs with a key made on
first use, whose certificate PublicCertificates returns. Modules report one
module, "default", version "1"; every capability is enabled, and
IsEnabled lists each one asked about in its config field, as the SDK's
stub does.

The system service starts background requests (runtime.RunInBackground)
by sending the app at AppURL a GET /_ah/background, at most 10 at once;
runtime.Stats reads zeros, as from the SDK's stub.

Search indexes live in memory (256 MiB in all) and are not persisted;
documents, queries, sorting, expressions, cursors and facets follow
production's documented rules and limits.

Requests aelocal does not implement, such as the search and geo queries
the appengine/v2 client cannot send, answer with an error that says so; a call
aelocal does not serve answers "aelocal does not serve service.Method".
No request, however malformed, stops the server.
*/
package aelocal
