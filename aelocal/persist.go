package aelocal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// dsCounters are the ID counters of every app: seq for the sequential IDs
// of AllocateIds (datastoreService.nextID), scat for the scattered IDs of
// Puts (nextScat). Both must survive a restart, or IDs handed out before
// would be handed out again.
type dsCounters struct{ seq, scat map[string]int64 }

func newCounters() dsCounters {
	return dsCounters{seq: make(map[string]int64), scat: make(map[string]int64)}
}

func (c dsCounters) clone() dsCounters {
	return dsCounters{seq: maps.Clone(c.seq), scat: maps.Clone(c.scat)}
}

// of returns the counters of a kind.
func (c dsCounters) of(kind byte) map[string]int64 {
	if kind == counterSeq {
		return c.seq
	}
	return c.scat
}

// appendAll appends every counter, sorted, with appendCounter.
func (c dsCounters) appendAll(dst []byte) []byte {
	for _, kind := range []byte{counterSeq, counterScat} {
		m := c.of(kind)
		for _, app := range slices.Sorted(maps.Keys(m)) {
			dst = appendCounter(dst, kind, app, m[app])
		}
	}
	return dst
}

// counter records the next value of an app's counter of a kind. Counters
// only grow, and never fall behind the IDs of stored entities.
func (im *dsImage) counter(kind byte, app string, next int64) error {
	if kind != counterSeq && kind != counterScat {
		return fmt.Errorf("unknown ID counter %q", kind)
	}
	if m := im.ids.of(kind); next > m[app] {
		m[app] = next
	}
	return nil
}

// plainError turns a service error into a plain one for load messages.
func plainError(err error) error {
	var se *serviceError
	if errors.As(err, &se) {
		return errors.New(se.detail)
	}
	return err
}

// snapshotOf lists the entities and counters of d, sorted, for a
// snapshot. Entities are never modified once stored, so the snapshot is
// written from these pointers without the lock. d.mu must be held.
func (d *datastoreService) snapshotLocked() ([]*dsEntity, dsCounters) {
	return spacesEntities(d.spaces), d.countersLocked().clone()
}

func imageEntities(im *dsImage) []*dsEntity { return spacesEntities(im.spaces) }

// spacesEntities lists the entities of spaces.
func spacesEntities(spaces map[nsKey]*dsSpace) []*dsEntity {
	n := 0
	for _, sp := range spaces {
		n += sp.lenLocked()
	}
	ents := make([]*dsEntity, 0, n)
	for _, sp := range spaces {
		for kind := range sp.idx {
			ents = slices.AppendSeq(ents, sp.kindEntities(kind))
		}
	}
	return ents
}

// writeSnapshot writes the magic and a snapshot of ents (sorted here, so
// the output is deterministic) and counters to w, and returns the bytes
// written. It stops early with ctx's error.
func writeSnapshot(ctx context.Context, w io.Writer, ents []*dsEntity, counters dsCounters) (int64, error) {
	slices.SortFunc(ents, func(a, b *dsEntity) int {
		if c := strings.Compare(a.space().app, b.space().app); c != 0 {
			return c
		}
		if c := strings.Compare(a.space().ns, b.space().ns); c != 0 {
			return c
		}
		return comparePath(a.path, b.path)
	})
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	bw.WriteString(fileMagic)

	rec, start := beginRecord(nil, recCounters)
	rec = endRecord(counters.appendAll(rec), start)
	bw.Write(rec)

	for i, e := range ents {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return cw.n, err
			}
		}
		rec, start = beginRecord(rec[:0], recEntity)
		rec = append(rec, e.encoded()...)
		rec = endRecord(rec, start)
		if _, err := bw.Write(rec); err != nil {
			return cw.n, err
		}
		if cap(rec) > 4<<20 {
			rec = nil // do not keep the buffer of one huge entity
		}
	}
	rec, start = beginRecord(rec[:0], recSnapshotEnd)
	rec = endRecord(binary.AppendUvarint(rec, uint64(len(ents))), start)
	bw.Write(rec)
	err := bw.Flush()
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// SaveDatastore writes the whole datastore, every app and namespace and the
// automatic ID counters, to w, in the format of a datastore file
// (Options.DatastorePath): every record carries a CRC-32C checksum, and
// entities go out in key order, so equal datastores save to equal bytes.
// Open transactions and query cursors are not saved.
//
// The entities are streamed: saving takes memory for a pointer per entity,
// not a copy of the data, and writes that arrive meanwhile are not held up.
func (s *Server) SaveDatastore(w io.Writer) error {
	d := s.datastore
	d.mu.Lock()
	ents, counters := d.snapshotLocked()
	d.mu.Unlock()
	if _, err := writeSnapshot(context.Background(), w, ents, counters); err != nil {
		return fmt.Errorf("aelocal: writing datastore: %w", err)
	}
	return nil
}

// LoadDatastore replaces the whole datastore with one read from r: what
// SaveDatastore wrote, a datastore file (Options.DatastorePath), or a file
// in the gob format that earlier versions of aelocal wrote. Every checksum
// is verified; a stream that fails one, or that ends inside a record (cut
// short), is refused with a *CorruptFileError. (A datastore file cut
// exactly between two records of its log is a shorter valid file, and
// cannot be told from one.)
// Open transactions and query cursors are discarded: committing such a
// transaction or continuing such a query fails. On error the datastore is
// left unchanged.
//
// On a server with a DatastorePath, the loaded datastore replaces the
// file's contents before LoadDatastore returns.
func (s *Server) LoadDatastore(r io.Reader) error {
	im, info, err := readImage(r)
	if err == nil && info.torn {
		// The reader forgives a torn last record because the server's own
		// file ends so after a kill; a stream handed in was cut short.
		err = &CorruptFileError{Offset: info.good, Reason: "the stream ends inside a record: it was cut short"}
	}
	if err != nil {
		return fmt.Errorf("aelocal: reading datastore: %w", err)
	}
	return s.datastore.replace(im)
}

// replace swaps im in as the whole datastore, rewriting the file first if
// there is one.
func (d *datastoreService) replace(im *dsImage) error {
	if j := d.journal; j != nil {
		j.rewriteMu.Lock()
		defer j.rewriteMu.Unlock()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.journal != nil {
		if err := d.journal.replaceLocked(im); err != nil {
			return err
		}
	}
	for h := range d.cursors {
		d.dropCursorLocked(h)
	}
	for h := range d.txs {
		d.dropTxLocked(h)
	}
	d.seq++
	for _, space := range im.spaces {
		space.version = d.seq
	}
	d.spaces = im.spaces
	d.nextID, d.nextScat = im.ids.seq, im.ids.scat
	return nil
}

// countersLocked returns d's live ID counters (not a copy).
func (d *datastoreService) countersLocked() dsCounters {
	return dsCounters{seq: d.nextID, scat: d.nextScat}
}
