// Package gaelimits holds the limits of App Engine's production services
// that both the session store and aelocal follow, so that the store never
// relies on a limit the emulator does not enforce, and the two cannot drift
// apart. The store must not import the emulator; both import this.
package gaelimits

// Memcache item limits. Production accepts an item while its key, its value
// and about 73 bytes of per-item overhead fit in one mebibyte: a 250-byte
// key with a 1,048,253-byte value is the largest item with the longest key.
// The figures are those of the SDK's memcache stub (_MEMCACHE_OVERHEAD,
// _MAX_ITEM_TOTAL_SIZE), which agree with measurements on production.
const (
	MemcacheMaxKeyBytes       = 250
	MemcacheMaxItemBytes      = 1 << 20
	MemcacheItemOverheadBytes = 73
)

// MemcacheItemFits reports whether production memcache stores an item whose
// key and value have these lengths. Keys over MemcacheMaxKeyBytes are refused
// on their own, before this limit applies.
func MemcacheItemFits(keyLen, valueLen int) bool {
	return keyLen+valueLen+MemcacheItemOverheadBytes <= MemcacheMaxItemBytes
}
