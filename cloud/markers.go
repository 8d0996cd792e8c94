package cloud

import "time"

// The core's markers and TTL cap (tombstone.go and gaesession.go of
// github.com/icza/gaesession/v2), which the transition tier must know: a
// tombstone in either cache is a logout, and where it cannot vouch for a
// copy it answers the placeholder, which sends the core to the Datastore.
// TestTransitionMarkersAreTheCores holds them to what the bundled store
// writes.
var (
	tombstoneValue    = []byte("\xffgaesession:removed")
	seeDatastoreValue = []byte("\xffgaesession:datastore-only")
)

// maxCacheTTL is Memcache's longest relative expiration, which the core
// caps its TTLs at; the Redis tier caps them too.
const maxCacheTTL = 30 * 24 * time.Hour
