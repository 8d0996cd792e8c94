package aelocal

import "math/bits"

// Automatic IDs, as production's default "scattered" policy gives them and
// as the Python SDK's stub computes them (datastore_stub_util.ToScatteredId):
// an incomplete key in a Put gets the next value of a counter, shifted and
// with its bits reversed, above 2^52, so IDs spread over the key space
// instead of growing; AllocateIds hands out sequential IDs below 2^52 from a
// counter of its own. Tests written against dev_appserver see the same IDs
// here: 0x14000000000000, 0x12000000000000, 0x16000000000000, ...
const (
	seqIDBits       = 52
	maxSequentialID = 1<<seqIDBits - 1
	maxScatterCount = 1<<(seqIDBits-1) - 1
	maxScatteredID  = maxSequentialID + 1 + maxScatterCount
	scatterShift    = 64 - seqIDBits + 1
)

// scatteredID is the automatic ID of counter value c (1, 2, ...).
func scatteredID(c int64) int64 {
	return maxSequentialID + 1 + int64(bits.Reverse64(uint64(c)<<scatterShift))
}

// noteID advances the counter an explicitly used id belongs to past it, so
// that automatic IDs never collide with it: nextSeq for sequential IDs,
// nextScat for IDs in the scattered range. Others (negative, or above the
// scattered range) belong to no counter.
func noteID(nextSeq, nextScat map[string]int64, app string, id int64) {
	switch {
	case id > 0 && id <= maxSequentialID:
		if id >= nextSeq[app] {
			nextSeq[app] = id + 1
		}
	case id > maxSequentialID && id <= maxScatteredID:
		if c := int64(bits.Reverse64(uint64(id)) >> scatterShift); c >= nextScat[app] {
			nextScat[app] = c + 1
		}
	}
}

// allocScatteredLocked returns the next automatic ID of app for a Put.
func (d *datastoreService) allocScatteredLocked(app string) int64 {
	c := max(d.nextScat[app], 1)
	if c > maxScatterCount {
		// Two quadrillion keys later: fall back to sequential IDs rather
		// than repeat one.
		return d.allocLocked(app, 1)
	}
	d.nextScat[app] = c + 1
	return scatteredID(c)
}
