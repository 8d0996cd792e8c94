package aelocal

import "fmt"

// The history bound.
//
// A transaction reads the snapshot taken when it began, so every version
// that a write replaces while it is open is kept (d.history) until no open
// transaction's snapshot can need it. Production keeps old versions too,
// but on disk and for as long as the transaction lives (270 seconds); kept
// in memory, one open transaction and a client overwriting a 1 MB entity
// 500 times pinned about 500 MB. So aelocal bounds the history by bytes:
// when it holds more than Options.TxHistoryLimit, the open transaction
// with the oldest snapshot, the one that pins the most, ends as expired,
// and its next call says why. Production has no such bound; it errs
// towards ending a transaction that production would have kept, never
// towards reading a wrong snapshot.

// DefaultTxHistoryLimit is the default of Options.TxHistoryLimit: the
// bytes of replaced entity versions the datastore keeps for the snapshots
// of open transactions.
const DefaultTxHistoryLimit = 64 << 20

// histOverhead is what a kept version costs beyond its entity's encoded
// size, roughly: the bookkeeping of one version, so that a flood of
// overwrites of tiny entities (or deletions) is bounded too.
const histOverhead = 64

// maxTxEnded bounds the reasons kept for transactions the server ended.
const maxTxEnded = 1000

// cost is what a kept version counts against the history bound.
func (o dsOld) cost() int64 {
	if o.e == nil {
		return histOverhead
	}
	return int64(o.e.size()) + histOverhead
}

// boundHistoryLocked ends open transactions, oldest snapshot first, until
// the history is back within its bound.
func (d *datastoreService) boundHistoryLocked() {
	limit := d.historyLimit
	if limit <= 0 {
		limit = DefaultTxHistoryLimit
	}
	for d.historyBytes > limit && len(d.txs) > 0 {
		var oldest uint64
		for h, t := range d.txs {
			if oldest == 0 || t.snap < d.txs[oldest].snap {
				oldest = h
			}
		}
		need := d.historyBytes
		d.dropTxLocked(oldest)
		if d.txEnded == nil || len(d.txEnded) >= maxTxEnded {
			// Past the bound, the next use of those gets the generic
			// message.
			d.txEnded = make(map[uint64]string)
		}
		d.txEnded[oldest] = fmt.Sprintf("its snapshot needed %.1f MiB of entity versions replaced since it began, more than the %.0f MiB aelocal keeps for open transactions (Options.TxHistoryLimit, flag -tx_history_limit); keep transactions short while other clients write, or raise the limit",
			float64(need)/(1<<20), float64(limit)/(1<<20))
	}
}
