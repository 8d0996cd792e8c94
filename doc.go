/*
Package gaesession provides Google App Engine (GAE) support for
github.com/icza/session: a session.Store that keeps sessions in App Engine
Memcache and, unless disabled, backs them up in the Datastore.

It is a drop-in replacement for the original github.com/icza/gaesession/v2:
the same API, the same Memcache values and Datastore entities (old and new
instances read each other's sessions during a rolling deploy), with the
original's defects fixed.

# Usage

Accessing Memcache needs the App Engine context of a request, so a store
lives for one request. Create a session manager with a new store in each
handler and close it at the end; Close writes back what the request changed:

	func handler(w http.ResponseWriter, r *http.Request) {
		ctx := appengine.NewContext(r)
		sessmgr := session.NewCookieManager(gaesession.NewMemcacheStore(ctx))
		defer sessmgr.Close() // saves changed sessions to Memcache and the Datastore

		sess := sessmgr.Get(r)
		if sess == nil {
			sess = session.NewSessionOptions(&session.SessOptions{
				Attrs: map[string]interface{}{"Count": 1},
			})
			sessmgr.Add(sess, w)
			return
		}
		sess.SetAttr("Count", sess.Attr("Count").(int)+1)
	}

# Where sessions live

Get looks in the store's own per-request cache, then in Memcache (key:
KeyPrefix + session ID), then in the Datastore (kind DSEntityName, key name
the session ID). A session found only in the Datastore is put back into
Memcache at once, unless another request has put a copy (or a logout's
tombstone) there meanwhile.

Close writes a session back only when it needs it: when it is new, when
its attributes changed, or when its stored copy is due for an expiry
refresh. A session that is only read costs a single Memcache get per
request. Changes are found by comparing the attributes with a description
of their values taken when the session was loaded (or added), not by
decoding or encoding again: values changed in place, through a pointer, a
slice or a map, count as changes; the access time and the order of map
entries do not; and it works alike with any Codec. A session added in a
request is written once, by Add, unless it changes afterwards. Every write
of a session that the request loaded is conditional (a Memcache
compare-and-swap on the item as loaded, or an add), also when the app
passes it to Add, so that no request can store a session that was logged
out meanwhile.

# Idle timeout

A session times out, as icza/session defines it, once it has not been
accessed for longer than its Timeout; a zero or negative Timeout means at
once. Each stored copy records its deadline (the access it was written
with, plus Timeout) in the Memcache item's flags and the Datastore
entity's "exp", and Get returns nil once the deadline has passed. A
read-only request writes the session back only once less than
(1-ExpirySlack)*Timeout of the deadline is left: a session accessed at
least once per (1-ExpirySlack)*Timeout never times out, and one idle for
longer than Timeout always has.

# Logging out

Remove writes a tombstone into Memcache, then deletes the Datastore entity.
After it returns, no Get on any instance returns the session, whatever
requests that loaded it earlier do when they close: their conditional
writes fail on the tombstone, and a Datastore put that lands after the
delete is deleted again by the request that made it. Old instances of the
original package cannot decode a tombstone and ask the Datastore, which no
longer has the session. RELIABILITY.md describes the window that remains
(Memcache evicting a tombstone within moments of the logout, or refusing
to store it).

# When a save fails

The session.Store interface returns no errors. Failures are logged through
google.golang.org/appengine/v2/log (or the standard logger on a context
that did not come through appengine.Middleware), and SaveError returns the
latest failure of a store, so an app can tell its user that a change (or
a logout) did not go through. By default the Datastore put of a changed
session goes first and the Memcache write follows it; with
AsyncDatastoreSave or MergeConcurrentUpdates Memcache is written first,
and with AsyncDatastoreSave the Datastore write finishes after the
response, on a context of its own (see WaitForAsyncSaves).

# Input that is not trusted

Session IDs come from cookies. An ID that icza/session could not have made
(see ValidID) is a miss that costs no RPC. A stored value that does not
decode is a miss, logged. A session too large for a Memcache item (key,
value and 73 bytes of overhead within 1 MiB) is kept in the Datastore only
(Memcache holds a marker that sends readers there), and that is logged
with its size. Memcache keys longer than 250 bytes are replaced by a hash.
Log lines name sessions by LogID, a short hash, never by the ID itself, and
error texts of the services are redacted of session IDs before they are
logged.

# Purging expired sessions

Expired sessions are not removed from the Datastore by themselves.
PurgeExpiredSessFromDSFunc returns a handler for a cron job that deletes
them in batches and stops before the cron deadline:

	http.HandleFunc("/demo/purge", gaesession.PurgeExpiredSessFromDSFunc(""))

PurgeExpiredSessFromDSFuncOptions takes PurgeOptions; with CronOnly set it
refuses requests that do not come from App Engine cron or a task queue:

	http.HandleFunc("/demo/purge", gaesession.PurgeExpiredSessFromDSFuncOptions(
		&gaesession.PurgeOptions{CronOnly: true}))

The purge deletes only sessions that have been expired for longer than
PurgeOptions.ExpiredFor, 49 hours by default, and a request that finds an
expired session in the Datastore deletes it only after that long too: a
request that loaded a session just before its deadline may save it after,
and its save is kept as long as no request holds a session for more than
half of ExpiredFor (App Engine's longest request deadline is 24 hours).

# Limits

Session IDs may be at most 256 characters. A session whose Memcache key and
marshalled value, plus 73 bytes, pass 1 MiB is not cached in Memcache, and
one larger than about 1 MB cannot be saved in the Datastore either.
Memcache holds a session for at most 30 days since its last write; the
Datastore carries longer timeouts.

# Testing

Package aelocal in this module is a local App Engine API server that the
real appengine/v2 client talks to; the tests of this package run against
it, and so can yours.
*/
package gaesession
