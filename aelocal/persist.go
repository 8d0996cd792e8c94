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

	"google.golang.org/protobuf/proto"
)

// dsImage is a datastore being loaded: entities and ID counters, built
// aside and swapped in whole, so that a load that fails changes nothing.
type dsImage struct {
	spaces   map[nsKey]*dsSpace
	ids      dsCounters
	entities int
}

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

func newImage() *dsImage {
	return &dsImage{spaces: make(map[nsKey]*dsSpace), ids: newCounters()}
}

// put stores an encoded EntityProto whose key is complete. It reads the
// bytes as they are (decodeEntityKey, decodeProps), without building the
// message: a restart costs about the file's size.
func (im *dsImage) put(b []byte) error {
	raw := string(b) // the entity keeps it, and its strings point into it
	sp, path, err := decodeEntityKey(raw)
	if err == nil {
		sp, path, err = checkKey(sp, path, "entity key", false)
	}
	if err != nil {
		return plainError(err)
	}
	e, err := newEntityRaw(sp, path, raw)
	if err != nil {
		return plainError(err)
	}
	space := im.spaces[sp]
	if space == nil {
		space = &dsSpace{kinds: make(map[string]map[string]*dsEntity)}
		im.spaces[sp] = space
	}
	kind := path[len(path)-1].kind
	m := space.kinds[kind]
	if m == nil {
		m = make(map[string]*dsEntity)
		space.kinds[kind] = m
	}
	k := path.encode()
	if m[k] == nil {
		im.entities++
	}
	m[k] = e
	for _, el := range path {
		noteID(im.ids.seq, im.ids.scat, sp.app, el.id)
	}
	return nil
}

// buildIndexes builds the sorted indexes of every kind loaded, before the
// server answers: built later, on a kind's first query or write, they
// held the datastore's lock for as long (38 s for 200,000 entities of ten
// properties), and every other call waited. Each kind's indexes are built
// from its entities in key order by buildKindIndex, its B-trees in
// parallel, one per CPU.
func (im *dsImage) buildIndexes() {
	for _, s := range im.spaces {
		if s.idx == nil {
			s.idx = make(map[string]*kindIndex, len(s.kinds))
		}
		for kind, m := range s.kinds {
			ents := slices.SortedFunc(maps.Values(m), func(a, b *dsEntity) int { return comparePath(a.path, b.path) })
			s.idx[kind] = buildKindIndex(ents, loadWorkers())
		}
	}
}

// del removes the entity an encoded Reference names, if stored.
func (im *dsImage) del(b []byte) error {
	ref, err := newMsg("appengine.v2.Reference")
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, ref.m.Interface()); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	sp, path, err := parseKey(ref, "deleted key", false)
	if err != nil {
		return plainError(err)
	}
	space := im.spaces[sp]
	if space == nil {
		return nil
	}
	kind := path[len(path)-1].kind
	m := space.kinds[kind]
	k := path.encode()
	if m[k] == nil {
		return nil
	}
	im.entities--
	delete(m, k)
	if len(m) == 0 {
		delete(space.kinds, kind)
		if len(space.kinds) == 0 {
			delete(im.spaces, sp)
		}
	}
	return nil
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

// loadInfo describes a datastore stream that was read.
type loadInfo struct {
	oldFormat bool  // the gob file of format 1
	snapEnd   int64 // bytes up to the end of the snapshot
	good      int64 // bytes up to the end of the last good record
	torn      bool  // a torn last record follows good
}

// readImage reads a datastore in format 2 (snapshot and log) or in the gob
// format that aelocal wrote before. A torn last record is dropped (it was
// never acknowledged); any other damage is a *CorruptFileError.
func readImage(r io.Reader) (*dsImage, loadInfo, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	if !hasMagic(br) {
		im, err := readGobImage(br)
		if err == nil {
			im.buildIndexes()
		}
		return im, loadInfo{oldFormat: true}, err
	}
	br.Discard(len(fileMagic))
	im := newImage()
	rr := newRecordReader(br, int64(len(fileMagic)))
	info := loadInfo{}
	inSnapshot, counted := true, uint64(0)
	for {
		at := rr.off
		typ, payload, err := rr.next()
		switch {
		case err == io.EOF || err == errTornTail:
			if inSnapshot {
				return nil, info, &CorruptFileError{Offset: at, Reason: "the file ends inside its snapshot (no end record): it is incomplete"}
			}
			info.good, info.torn = at, err == errTornTail
			im.buildIndexes()
			return im, info, nil
		case err != nil:
			return nil, info, err
		}
		bad := func(format string, args ...any) error {
			return &CorruptFileError{Offset: at, Reason: fmt.Sprintf(format, args...)}
		}
		p := &payloadReader{b: payload}
		switch {
		case typ == recCounters && inSnapshot:
			for !p.done() {
				if err := im.counter(p.counter()); err != nil {
					return nil, info, bad("%v", err)
				}
			}
		case typ == recEntity && inSnapshot:
			if err := im.put(payload); err != nil {
				return nil, info, bad("%v", err)
			}
			counted++
		case typ == recSnapshotEnd && inSnapshot:
			if n := p.uvarint(); n != counted {
				return nil, info, bad("the snapshot ends after %d entities but says it holds %d", counted, n)
			}
			inSnapshot = false
			info.snapEnd = rr.off
		case typ == recBatch && !inSnapshot:
			for !p.done() {
				switch op := p.byte(); op {
				case opPut:
					err = im.put(p.bytes())
				case opDelete:
					err = im.del(p.bytes())
				case opCounter:
					err = im.counter(p.counter())
				default:
					err = fmt.Errorf("unknown operation %q", op)
				}
				if err != nil {
					return nil, info, bad("%v", err)
				}
			}
		default:
			return nil, info, bad("unexpected record type %q", typ)
		}
		if p.bad {
			return nil, info, bad("malformed %q record", typ)
		}
	}
}

// snapshotOf lists the entities and counters of d, sorted, for a
// snapshot. Entities are never modified once stored, so the snapshot is
// written from these pointers without the lock. d.mu must be held.
func (d *datastoreService) snapshotLocked() ([]*dsEntity, dsCounters) {
	n := 0
	for _, sp := range d.spaces {
		for _, m := range sp.kinds {
			n += len(m)
		}
	}
	ents := make([]*dsEntity, 0, n)
	for _, sp := range d.spaces {
		for _, m := range sp.kinds {
			for _, e := range m {
				ents = append(ents, e)
			}
		}
	}
	return ents, d.countersLocked().clone()
}

func imageEntities(im *dsImage) []*dsEntity {
	ents := make([]*dsEntity, 0, im.entities)
	for _, sp := range im.spaces {
		for _, m := range sp.kinds {
			for _, e := range m {
				ents = append(ents, e)
			}
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
