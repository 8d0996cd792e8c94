package aelocal

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Loading a datastore file (issue 25): a restart costs about the file's
// size, spread over the CPUs.
//
// One goroutine reads the records and checks their frames (length and
// checksums) and their order (the snapshot, then the log); the records go
// in chunks of about a megabyte to one decoder per CPU, which turn the
// bytes into entities (decodeEntityKey, decodeProps: no message is built);
// and the decoded chunks are applied in file order. So the first bad
// record of the file is the one reported, whichever goroutine found it,
// and a torn tail is accepted only at the end, as a sequential read would.
//
// No map by key is built. The snapshot's entity records are in key order
// (writeSnapshot), so each kind's entities are appended to a slice that
// stays ascending, the order buildKindIndex takes; a snapshot that is not
// in order (the gob format, or a file written otherwise) is sorted once at
// the end, the last record of a key winning. The log's writes, applied
// after the snapshot, are kept per kind in the order read and merged into
// the slice at the end, the last write of a key winning.

// dsImage is a datastore being loaded: entities and ID counters, built
// aside and swapped in whole, so that a load that fails changes nothing.
type dsImage struct {
	spaces map[nsKey]*dsSpace // the loaded datastore, once finished
	ids    dsCounters

	load  map[nsKey]map[string]*imageKind // the kinds being loaded
	last  *imageKind                      // the kind of the previous entity
	names map[string]string               // one copy of each kind's name (intern)
}

// imageKind is one kind of one namespace being loaded.
type imageKind struct {
	sp       nsKey
	kind     string
	ents     []*dsEntity // the snapshot's entities, in the order read
	unsorted bool        // ents do not ascend strictly by key
	log      []logWrite  // the log's writes, in order (compacted by squash)
	squashAt int         // len(log) at which squash runs next
}

// logWrite is a write of the log: the entity at path, nil for a delete.
type logWrite struct {
	path dsPath
	e    *dsEntity
}

func newImage() *dsImage {
	return &dsImage{spaces: make(map[nsKey]*dsSpace), ids: newCounters(), load: make(map[nsKey]map[string]*imageKind), names: make(map[string]string)}
}

// intern makes the kinds of path share one copy of each kind's name.
// Comparisons of keys, which every lookup by key and every index entry
// makes, then find equal kinds equal by their pointers, without reading
// the bytes of each entity (a cache miss each, in a large kind: the names
// pointed into each entity's own encoded bytes).
func (im *dsImage) intern(path dsPath) {
	for i, el := range path {
		name, ok := im.names[el.kind]
		if !ok {
			name = strings.Clone(el.kind)
			im.names[name] = name
		}
		path[i].kind = name
	}
}

// kindAt returns the kind being loaded of sp and kind, made if new.
func (im *dsImage) kindAt(sp nsKey, kind string) *imageKind {
	if k := im.last; k != nil && k.kind == kind && k.sp == sp {
		return k
	}
	kinds := im.load[sp]
	if kinds == nil {
		kinds = make(map[string]*imageKind)
		im.load[sp] = kinds
	}
	k := kinds[kind]
	if k == nil {
		k = &imageKind{sp: sp, kind: kind, squashAt: 1024}
		kinds[kind] = k
	}
	im.last = k
	return k
}

// decodeImageEntity decodes an encoded EntityProto whose key is complete,
// as a record of the file holds it. It reads the bytes as they are
// (decodeEntityKey, decodeProps), without building the message. The
// entity keeps its own copy of b.
func decodeImageEntity(b []byte) (*dsEntity, error) {
	raw := string(b) // the entity keeps it, and its strings point into it
	sp, path, err := decodeEntityKey(raw)
	if err == nil {
		sp, path, err = checkKey(sp, path, "entity key", false)
	}
	if err != nil {
		return nil, plainError(err)
	}
	e, err := newEntityRaw(sp, path, raw)
	if err != nil {
		return nil, plainError(err)
	}
	return e, nil
}

// decodeDeletedKey decodes the encoded Reference of a deleted key.
func decodeDeletedKey(b []byte) (nsKey, dsPath, error) {
	ref, err := newMsg("appengine.v2.Reference")
	if err != nil {
		return nsKey{}, nil, err
	}
	if err := proto.Unmarshal(b, ref.m.Interface()); err != nil {
		return nsKey{}, nil, fmt.Errorf("key: %w", err)
	}
	sp, path, err := parseKey(ref, "deleted key", false)
	if err != nil {
		return nsKey{}, nil, plainError(err)
	}
	return sp, path, nil
}

// put stores an entity of the snapshot (or of the gob format's file).
func (im *dsImage) put(e *dsEntity) {
	im.intern(e.path)
	k := im.kindAt(e.space(), kindOf(e.path))
	if n := len(k.ents); n > 0 && !k.unsorted && comparePath(k.ents[n-1].path, e.path) >= 0 {
		k.unsorted = true
	}
	k.ents = append(k.ents, e)
	im.noteIDs(e.space().app, e.path)
}

// putBytes is put of an encoded EntityProto (the gob format).
func (im *dsImage) putBytes(b []byte) error {
	e, err := decodeImageEntity(b)
	if err != nil {
		return err
	}
	im.put(e)
	return nil
}

// write applies a write of the log: e at path, nil for a delete.
func (im *dsImage) write(sp nsKey, path dsPath, e *dsEntity) {
	im.intern(path)
	k := im.kindAt(sp, kindOf(path))
	k.log = append(k.log, logWrite{path, e})
	if len(k.log) >= k.squashAt {
		// A log that writes the same keys again and again holds each
		// once, not every version read.
		k.squash()
		k.squashAt = max(1024, 2*len(k.log))
	}
	if e != nil {
		im.noteIDs(sp.app, path)
	}
}

func (im *dsImage) noteIDs(app string, path dsPath) {
	for _, el := range path {
		if el.id != 0 {
			noteID(im.ids.seq, im.ids.scat, app, el.id)
		}
	}
}

func byPath(a, b *dsEntity) int { return comparePath(a.path, b.path) }

// lastOfEachKey keeps the last of each run of entities of equal keys in
// ents, which is sorted by key.
func lastOfEachKey(ents []*dsEntity) []*dsEntity {
	out := ents[:0]
	for i, e := range ents {
		if i+1 < len(ents) && comparePath(ents[i+1].path, e.path) == 0 {
			continue
		}
		out = append(out, e)
	}
	clear(ents[len(out):])
	return out
}

// squash sorts k's log by key and keeps the last write of each key.
func (k *imageKind) squash() {
	slices.SortStableFunc(k.log, func(a, b logWrite) int { return comparePath(a.path, b.path) })
	out := k.log[:0]
	for i, w := range k.log {
		if i+1 < len(k.log) && comparePath(k.log[i+1].path, w.path) == 0 {
			continue
		}
		out = append(out, w)
	}
	clear(k.log[len(out):])
	k.log = out
}

// merged returns k's entities in ascending key order: the snapshot's, with
// the log's writes applied.
func (k *imageKind) merged() []*dsEntity {
	ents := k.ents
	if k.unsorted {
		slices.SortStableFunc(ents, byPath)
		ents = lastOfEachKey(ents)
	}
	if len(k.log) == 0 {
		return ents
	}
	k.squash()
	out := make([]*dsEntity, 0, len(ents)+len(k.log))
	i := 0
	for _, w := range k.log {
		for i < len(ents) && comparePath(ents[i].path, w.path) < 0 {
			out = append(out, ents[i])
			i++
		}
		if i < len(ents) && comparePath(ents[i].path, w.path) == 0 {
			i++ // replaced or deleted
		}
		if w.e != nil {
			out = append(out, w.e)
		}
	}
	return append(out, ents[i:]...)
}

// finish builds the loaded datastore: every kind's entities in key order
// and its sorted indexes, before the server answers. Built later, on a
// kind's first query or write, the indexes held the datastore's lock for
// as long (38 s for 200,000 entities of ten properties), and every other
// call waited. Each kind's indexes are built by buildKindIndex, its
// B-trees in parallel, one per CPU.
func (im *dsImage) finish() {
	for sp, kinds := range im.load {
		s := &dsSpace{idx: make(map[string]*kindIndex, len(kinds))}
		for kind, k := range kinds {
			if ents := k.merged(); len(ents) > 0 {
				s.idx[kind] = buildKindIndex(ents, loadWorkers())
			}
			delete(kinds, kind) // its slices are garbage now
		}
		if len(s.idx) > 0 {
			im.spaces[sp] = s
		}
	}
	im.load, im.last, im.names = nil, nil, nil
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
			im.finish()
		}
		return im, loadInfo{oldFormat: true}, err
	}
	br.Discard(len(fileMagic))
	im := newImage()
	info, err := im.readRecords(newRecordReader(br, int64(len(fileMagic))), loadWorkers())
	if err != nil {
		return nil, info, err
	}
	im.finish()
	return im, info, nil
}

// Chunks of records between the reader, the decoders and the applier.
const (
	loadChunkBytes   = 1 << 20 // payload bytes of a chunk, about
	loadChunkRecords = 4096    // records of a chunk, at most
)

// loadChunk is a run of records of the file, read and checked, then
// decoded by a worker (ready is closed then), then applied in order.
type loadChunk struct {
	buf   []byte // the payloads, back to back
	recs  []loadRec
	out   []loadedRec
	ready chan struct{}
	// end, on the last chunk only, is how the reading ended, after recs.
	end *loadEnd
}

// loadRec is one record of a chunk: its offset in the file, its type,
// and its payload, buf[lo:hi].
type loadRec struct {
	off    int64
	typ    byte
	lo, hi int
}

// loadedRec is a decoded record.
type loadedRec struct {
	e   *dsEntity // recEntity
	ops []imageOp // recCounters, recBatch
	err error     // the record's *CorruptFileError
}

// imageOp is a write of a batch record, or a counter.
type imageOp struct {
	op   byte // opPut, opDelete or opCounter
	e    *dsEntity
	sp   nsKey  // opDelete
	path dsPath // opDelete
	kind byte   // opCounter
	app  string // opCounter
	next int64  // opCounter
}

// loadEnd is how the reader stopped: err is io.EOF or errTornTail at a
// clean end or a torn tail, or the error of the record at at.
type loadEnd struct {
	at         int64
	err        error
	inSnapshot bool
	snapEnd    int64
}

// readRecords reads every record of rr into im, with workers decoders.
func (im *dsImage) readRecords(rr *recordReader, workers int) (loadInfo, error) {
	workers = max(1, workers)
	inFlight := 2*workers + 2
	ordered := make(chan *loadChunk, inFlight)
	work := make(chan *loadChunk, inFlight)
	free := make(chan *loadChunk, inFlight+1) // chunks applied, to reuse
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1 + workers)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		readChunks(rr, ordered, work, free, stop)
	}()
	for range workers {
		go func() {
			defer wg.Done()
			for c := range work {
				c.decode()
				close(c.ready)
			}
		}()
	}
	info, err := im.applyChunks(ordered, free)
	close(stop)
	for range ordered {
		// Let the reader see stop; decoders finish their chunks.
	}
	wg.Wait()
	return info, err
}

// readChunks reads rr's records into chunks and sends each to ordered and
// work, until the end of the stream, an error, or stop.
func readChunks(rr *recordReader, ordered, work chan<- *loadChunk, free <-chan *loadChunk, stop <-chan struct{}) {
	newChunk := func() *loadChunk {
		select {
		case c := <-free:
			c.buf, c.recs, c.ready = c.buf[:0], c.recs[:0], make(chan struct{})
			return c
		default:
			return &loadChunk{buf: make([]byte, 0, loadChunkBytes+64<<10), ready: make(chan struct{})}
		}
	}
	send := func(c *loadChunk) bool {
		select {
		case ordered <- c:
		case <-stop:
			return false
		}
		select {
		case work <- c:
			return true
		case <-stop:
			close(c.ready) // never decoded; the applier has stopped
			return false
		}
	}
	c := newChunk()
	inSnapshot, counted, snapEnd := true, uint64(0), int64(0)
	for {
		at := rr.off
		typ, payload, err := rr.next()
		if err == nil {
			err = checkRecordOrder(typ, payload, at, &inSnapshot, &counted)
			if err == nil && typ == recSnapshotEnd {
				snapEnd = rr.off
			}
		}
		if err != nil {
			c.end = &loadEnd{at: at, err: err, inSnapshot: inSnapshot, snapEnd: snapEnd}
			send(c)
			return
		}
		if typ == recSnapshotEnd {
			continue
		}
		lo := len(c.buf)
		c.buf = append(c.buf, payload...)
		c.recs = append(c.recs, loadRec{off: at, typ: typ, lo: lo, hi: len(c.buf)})
		if len(c.buf) >= loadChunkBytes || len(c.recs) >= loadChunkRecords {
			if !send(c) {
				return
			}
			c = newChunk()
		}
	}
}

// checkRecordOrder checks that a record of type typ may come where it
// does (the snapshot: counters, entities, its end; then the log's
// batches) and keeps the count of the snapshot's entities.
func checkRecordOrder(typ byte, payload []byte, at int64, inSnapshot *bool, counted *uint64) error {
	bad := func(format string, args ...any) error {
		return &CorruptFileError{Offset: at, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case (typ == recCounters || typ == recEntity) && *inSnapshot:
		if typ == recEntity {
			*counted++
		}
	case typ == recSnapshotEnd && *inSnapshot:
		p := &payloadReader{b: payload}
		if n := p.uvarint(); n != *counted {
			return bad("the snapshot ends after %d entities but says it holds %d", *counted, n)
		}
		if p.bad {
			return bad("malformed %q record", typ)
		}
		*inSnapshot = false
	case typ == recBatch && !*inSnapshot:
	default:
		return bad("unexpected record type %q", typ)
	}
	return nil
}

// decode decodes c's records into c.out.
func (c *loadChunk) decode() {
	if cap(c.out) < len(c.recs) {
		c.out = make([]loadedRec, len(c.recs))
	}
	c.out = c.out[:len(c.recs)]
	for i, r := range c.recs {
		c.out[i] = decodeRecord(r.typ, c.buf[r.lo:r.hi], r.off)
	}
}

// decodeRecord decodes the payload of a record of type typ at offset at:
// an entity, counters or a batch (checkRecordOrder let only those by).
func decodeRecord(typ byte, payload []byte, at int64) loadedRec {
	bad := func(format string, args ...any) loadedRec {
		return loadedRec{err: &CorruptFileError{Offset: at, Reason: fmt.Sprintf(format, args...)}}
	}
	if typ == recEntity {
		e, err := decodeImageEntity(payload)
		if err != nil {
			return bad("%v", err)
		}
		return loadedRec{e: e}
	}
	var ops []imageOp
	p := &payloadReader{b: payload}
	for !p.done() {
		op := byte(opCounter)
		if typ == recBatch {
			op = p.byte()
		}
		switch op {
		case opPut:
			e, err := decodeImageEntity(p.bytes())
			if err != nil {
				return bad("%v", err)
			}
			ops = append(ops, imageOp{op: op, e: e})
		case opDelete:
			sp, path, err := decodeDeletedKey(p.bytes())
			if err != nil {
				return bad("%v", err)
			}
			ops = append(ops, imageOp{op: op, sp: sp, path: path})
		case opCounter:
			kind, app, next := p.counter()
			if kind != counterSeq && kind != counterScat {
				return bad("unknown ID counter %q", kind)
			}
			ops = append(ops, imageOp{op: op, kind: kind, app: app, next: next})
		default:
			return bad("unknown operation %q", op)
		}
	}
	if p.bad {
		return bad("malformed %q record", typ)
	}
	return loadedRec{ops: ops}
}

// applyChunks applies the chunks of ordered, in order, to im, and returns
// what the last one says of the end; or the first error, in file order.
func (im *dsImage) applyChunks(ordered <-chan *loadChunk, free chan<- *loadChunk) (loadInfo, error) {
	var info loadInfo
	for c := range ordered {
		<-c.ready
		for i := range c.out {
			if err := im.apply(&c.out[i]); err != nil {
				return info, err
			}
		}
		if end := c.end; end != nil {
			if end.err != io.EOF && end.err != errTornTail {
				return info, end.err
			}
			if end.inSnapshot {
				return info, &CorruptFileError{Offset: end.at, Reason: "the file ends inside its snapshot (no end record): it is incomplete"}
			}
			info.snapEnd, info.good, info.torn = end.snapEnd, end.at, end.err == errTornTail
			return info, nil
		}
		if cap(c.buf) <= 4*loadChunkBytes { // not one of a huge record
			clear(c.out) // the entities are the image's now
			select {
			case free <- c:
			default:
			}
		}
	}
	return info, fmt.Errorf("the reader of the datastore stopped early")
}

// apply applies a decoded record to im.
func (im *dsImage) apply(r *loadedRec) error {
	if r.err != nil {
		return r.err
	}
	if r.e != nil {
		im.put(r.e)
		return nil
	}
	for _, op := range r.ops {
		switch op.op {
		case opPut:
			im.write(op.e.space(), op.e.path, op.e)
		case opDelete:
			im.write(op.sp, op.path, nil)
		case opCounter:
			im.counter(op.kind, op.app, op.next)
		}
	}
	return nil
}
