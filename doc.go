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
Memcache at once, unless another request has put a copy there meanwhile. An expired Datastore entity is deleted and reported as
no session.

Close writes a session back only when it needs it: when it is new, when
its attributes changed, or when its stored copy is due for an expiry
refresh. A session that is only read costs a single Memcache get per
request. The stored copy of a session lives Timeout*(1+ExpirySlack) and is
refreshed once less than Timeout remains, so a session accessed at least
once per Timeout never expires, and one idle for longer than
Timeout*(1+ExpirySlack) is gone. Memcache and Datastore writes go out in
parallel; with AsyncDatastoreSave the Datastore write finishes after the
response, on a context of its own (see WaitForAsyncSaves).

# Input that is not trusted

Session IDs come from cookies. An ID that icza/session could not have made
(see ValidID) is a miss that costs no RPC. A stored value that does not
decode is a miss, logged. A session too large for a Memcache item (key,
value and 73 bytes of overhead within 1 MiB) is logged with its size and
kept in the Datastore only. Memcache
keys longer than 250 bytes are replaced by a hash. Log lines name sessions
by LogID, a short hash, never by the ID itself. Failures are logged through
google.golang.org/appengine/v2/log (or the standard logger on a context
that did not come through appengine.Middleware); the session.Store
interface returns no errors.

# Purging expired sessions

Expired sessions are not removed from the Datastore by themselves.
PurgeExpiredSessFromDSFunc returns a handler for a cron job that deletes
them in batches and stops before the cron deadline:

	http.HandleFunc("/demo/purge", gaesession.PurgeExpiredSessFromDSFunc(""))

PurgeExpiredSessFromDSFuncOptions takes PurgeOptions; with CronOnly set it
refuses requests that do not come from App Engine cron or a task queue:

	http.HandleFunc("/demo/purge", gaesession.PurgeExpiredSessFromDSFuncOptions(
		&gaesession.PurgeOptions{CronOnly: true}))

# Limits

Session IDs may be at most 256 characters. A session whose Memcache key and
marshalled value, plus 73 bytes, pass 1 MiB is not cached in Memcache, and
one larger than about 1 MB cannot be saved in the Datastore either. Memcache holds a session for
at most 30 days since its last write; the Datastore carries longer timeouts.

# Testing

Package aelocal in this module is a local App Engine API server that the
real appengine/v2 client talks to; the tests of this package run against
it, and so can yours.
*/
package gaesession
