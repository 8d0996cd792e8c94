package aelocal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// The journal keeps a datastore file up to date as the datastore changes.
//
// Every write method gathers its writes (and any ID counters it moved)
// while it holds the datastore's lock, seals them into one batch record
// before releasing it, and answers only once that record is synced to
// disk. Sealing under the lock makes the record order the order in which
// the writes became visible. Waiting happens outside the lock: while one
// caller writes and syncs, the records sealed meanwhile accumulate, and the
// next caller to wait writes and syncs them all at once (group commit), so
// 16 concurrent writers cost about one sync per round, not 16.
//
// When the log behind the snapshot outgrows the snapshot (and
// compactMinBytes), a background compaction writes a new snapshot to a
// temporary file from entity pointers taken under the lock (entities are
// immutable once stored), copies over the records sealed since, and
// renames it over the file. Writes go on meanwhile.
type journal struct {
	path, dir string
	d         *datastoreService

	// rewriteMu is held by compaction and by LoadDatastore for the whole
	// of a file rewrite; lock order: rewriteMu, d.mu, mu.
	rewriteMu sync.Mutex

	mu       sync.Mutex
	cond     sync.Cond
	f        *os.File
	buf      []byte // sealed records not yet written
	sealed   uint64 // records sealed so far
	durable  uint64 // records written and synced so far
	written  int64  // bytes in f
	end      int64  // bytes in f once buf is written
	snapEnd  int64  // bytes of f's snapshot part
	flushing bool   // someone owns f: a flush, a compaction or a rewrite
	err      error  // a failed write; every later write fails with it
	closed   bool
	closing  bool          // close has begun: no new compaction
	syncs    uint64        // fsyncs of the log, for benchmarks
	syncTime time.Duration // time spent in them

	// Group commit (gatherLocked).
	recentBatches [8]uint64     // records per sync, the last few
	avgSync       time.Duration // moving average of a sync's duration
	sealedSignal  chan struct{} // non-nil while a batch gathers

	compacting      bool
	compactMinBytes int64
	compactBackoff  int64 // log size below which no compaction is retried
	cancelCompact   context.CancelFunc
	compactDone     sync.WaitGroup

	// Guarded by d.mu, as the sealing that uses them.
	logged  dsCounters // ID counters as last logged
	scratch []byte
}

// defaultCompactMinBytes is the log size below which no compaction runs,
// however small the snapshot.
const defaultCompactMinBytes = 8 << 20

var errJournalClosed = errors.New("the datastore file is closed")

// openDatastoreFile opens (or creates) the datastore file at path for d,
// loads it into d and attaches a journal. Nothing is served before it
// returns.
func openDatastoreFile(d *datastoreService, path string) (*journal, error) {
	path, err := resolveDatastorePath(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	switch st, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("aelocal: datastore path %s: directory %s does not exist", path, dir)
	case err != nil:
		return nil, fmt.Errorf("aelocal: datastore path %s: %w", path, err)
	case !st.IsDir():
		return nil, fmt.Errorf("aelocal: datastore path %s: %s is not a directory", path, dir)
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("aelocal: datastore path %s is not a regular file", path)
	}
	j := &journal{path: path, dir: dir, d: d, compactMinBytes: defaultCompactMinBytes}
	j.cond.L = &j.mu
	// Rewrites go through temporary files in dir: make sure they can,
	// now, rather than find out at the first compaction.
	probe, err := j.createTemp()
	if err != nil {
		return nil, fmt.Errorf("aelocal: datastore path %s: cannot create files in %s: %w", path, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	f, err := j.openAndLock()
	if err != nil {
		return nil, err
	}
	im, info, err := readImage(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		f.Close()
		var ce *CorruptFileError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("aelocal: datastore file %s: %w; it is left as it is: restore a copy, or move it away to start with an empty datastore", path, err)
		}
		return nil, fmt.Errorf("aelocal: datastore file %s: %w", path, err)
	}
	// Only the owner of the file may clean up: temporary files of a
	// rewrite that a kill interrupted.
	j.removeTemps()
	switch {
	case info.oldFormat:
		// Convert at once, so that appends go to a checksummed file.
		tmp, err := j.createTemp()
		if err == nil {
			var n int64
			if n, err = writeSnapshot(context.Background(), tmp, imageEntities(im), im.ids); err == nil {
				err = j.install(tmp, f)
			}
			if err != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			} else {
				f.Close()
				f = tmp
				info.good, info.snapEnd = n, n
				log.Printf("aelocal: converted datastore file %s from the gob format to format 2", path)
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("aelocal: converting datastore file %s: %w", path, err)
		}
	case info.torn:
		size, _ := f.Seek(0, io.SeekEnd)
		if err := f.Truncate(info.good); err != nil {
			f.Close()
			return nil, fmt.Errorf("aelocal: datastore file %s: dropping a torn last record: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("aelocal: datastore file %s: %w", path, err)
		}
		log.Printf("aelocal: datastore file %s: dropped a torn last record (%d bytes at byte %d): the process stopped while writing it, before it was acknowledged", path, size-info.good, info.good)
	}
	if _, err := f.Seek(info.good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("aelocal: datastore file %s: %w", path, err)
	}
	j.f = f
	j.written, j.end, j.snapEnd = info.good, info.good, info.snapEnd
	j.logged = im.ids.clone()

	d.mu.Lock()
	d.spaces, d.nextID, d.nextScat = im.spaces, im.ids.seq, im.ids.scat
	d.journal = j
	d.mu.Unlock()
	j.mu.Lock()
	j.maybeCompactLocked()
	j.mu.Unlock()
	return j, nil
}

// resolveDatastorePath returns the absolute path, free of symbolic links,
// of the datastore file that path names, once, at start: from then on the
// server locks, appends to and replaces (at each compaction, by a rename)
// that one file for its whole life. Renaming over a link would replace the
// link and leave its target stale and unlocked; a link whose target is
// missing would make creating the file fail forever. So a link is
// followed to its target now (and the log says so), and a link to nothing
// is refused.
func resolveDatastorePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("aelocal: datastore path %q: %w", path, err)
	}
	st, err := os.Lstat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A new file: only its directory may involve links. A missing
		// directory is reported by the caller.
		dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
		if err != nil {
			return abs, nil
		}
		return filepath.Join(dir, filepath.Base(abs)), nil
	case err != nil:
		return "", fmt.Errorf("aelocal: datastore path %s: %w", abs, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if st.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(abs)
			return "", fmt.Errorf("aelocal: datastore path %s is a symbolic link to %s, which does not resolve to a file (%v): give the path of the datastore file itself, or create the link's target", abs, target, err)
		}
		return "", fmt.Errorf("aelocal: datastore path %s: %w", abs, err)
	}
	if resolved != abs && st.Mode()&fs.ModeSymlink != 0 {
		log.Printf("aelocal: datastore path %s is a symbolic link: the server uses its target, %s, for its whole life", abs, resolved)
	}
	return resolved, nil
}

// openAndLock opens the file at j.path for reading and appending, creating
// an empty datastore file if there is none, and takes the lock that keeps
// a second aelocal from writing to it.
func (j *journal) openAndLock() (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(j.path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			// Created here unless someone else creates it meanwhile;
			// either way the next round opens it. Something that both
			// exists and cannot be opened (a link made to nowhere since
			// the path was resolved) must not make this loop forever.
			if attempt >= 10 {
				return nil, fmt.Errorf("aelocal: datastore file %s cannot be created: something else keeps that name (a symbolic link to nowhere?)", j.path)
			}
			if err = j.createEmpty(); err == nil || errors.Is(err, fs.ErrExist) {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("aelocal: datastore file %s: %w", j.path, err)
		}
		if err := lockFile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("aelocal: datastore file %s is in use by another process (%v)", j.path, err)
		}
		// A rewrite by the previous owner may have replaced the file
		// between our open and our lock: then we locked the old one.
		if same, err := sameFile(f, j.path); err != nil || !same {
			f.Close()
			if attempt < 10 {
				continue
			}
			return nil, fmt.Errorf("aelocal: datastore file %s keeps being replaced by another process", j.path)
		}
		return f, nil
	}
}

func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// createEmpty creates the file with an empty snapshot, complete or not at
// all: written aside, synced, then linked into place (which, unlike a
// rename, fails if someone created the file meanwhile).
func (j *journal) createEmpty() error {
	tmp, err := j.createTemp()
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := writeSnapshot(context.Background(), tmp, nil, newCounters()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), j.path); err != nil {
		return err
	}
	syncDir(j.dir)
	return nil
}

const tempInfix = ".tmp-"

func (j *journal) createTemp() (*os.File, error) {
	return os.CreateTemp(j.dir, filepath.Base(j.path)+tempInfix+"*")
}

// removeTemps deletes temporary files that a rewrite of this datastore
// file left behind when its process was killed.
func (j *journal) removeTemps() {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return
	}
	prefix := filepath.Base(j.path) + tempInfix
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			if os.Remove(filepath.Join(j.dir, e.Name())) == nil {
				log.Printf("aelocal: removed %s, left behind by an interrupted rewrite of the datastore file", e.Name())
			}
		}
	}
}

// install makes tmp, a complete datastore file, the file at j.path: it is
// synced, locked, given old's permissions and renamed into place.
func (j *journal) install(tmp, old *os.File) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := lockFile(tmp); err != nil {
		return err
	}
	if st, err := old.Stat(); err == nil {
		tmp.Chmod(st.Mode().Perm())
	}
	if err := os.Rename(tmp.Name(), j.path); err != nil {
		return err
	}
	syncDir(j.dir)
	return nil
}

// syncDir makes a rename or link in dir durable. Not every system can sync
// a directory; there the rename is as durable as the system makes it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// recordLocked notes a batch of writes for the journal, if there is one.
// d.mu must be held.
func (d *datastoreService) recordLocked(ws []dsWrite) {
	if d.journal != nil {
		d.pending = append(d.pending, ws...)
	}
}

// unlockDurable releases d.mu at the end of a method that may have
// written, and returns only once those writes are on disk. If they cannot
// be made durable, the method fails with INTERNAL_ERROR (unless it failed
// already). Use it as: defer d.unlockDurable(&err).
func (d *datastoreService) unlockDurable(errp *error) {
	j := d.journal
	var ticket uint64
	if j != nil {
		ticket = j.sealLocked()
	}
	d.mu.Unlock()
	if ticket == 0 {
		return
	}
	if err := j.wait(ticket); err != nil && *errp == nil {
		*errp = errorf(dsInternalError, "aelocal: the write may not survive a restart: %v", err)
	}
}

// writableLocked refuses a write before it changes anything once the
// datastore file has failed: the server then keeps what it has, in memory
// and on disk, and answers reads, until a restart. d.mu must be held.
//
// The writes whose records were being synced when the file failed (and any
// sharing their sync) were already visible in memory; they answer
// INTERNAL_ERROR ("may not survive a restart"), which, as in production,
// leaves their outcome unknown: they stay in memory and may be missing
// from the file.
func (d *datastoreService) writableLocked() error {
	j := d.journal
	if j == nil {
		return nil
	}
	j.mu.Lock()
	err := j.err
	j.mu.Unlock()
	if err != nil {
		return errorf(dsInternalError, "aelocal: the write was refused and changed nothing: %v", err)
	}
	return nil
}

// sealLocked turns the pending writes and moved ID counters into one batch
// record and queues it. It returns the record's ticket for wait, or 0 if
// there was nothing to log. d.mu must be held.
func (j *journal) sealLocked() uint64 {
	d := j.d
	rec, start := beginRecord(j.scratch[:0], recBatch)
	empty := len(rec)
	marshal := proto.MarshalOptions{Deterministic: true}
	for _, w := range d.pending {
		var err error
		if w.ent != nil {
			rec = append(rec, opPut)
			rec = binary.AppendUvarint(rec, uint64(len(w.ent.encoded())))
			rec = append(rec, w.ent.encoded()...)
		} else {
			ref, _ := newMsg("appengine.v2.Reference")
			writeRef(ref, w.sp.app, w.sp.ns, w.path)
			rec = append(rec, opDelete)
			rec, err = appendMessage(rec, marshal, ref)
		}
		if err != nil {
			// Entities were encoded once already, on the way in; this
			// cannot fail short of a bug, which must not pass silently.
			panic(fmt.Sprintf("aelocal: encoding a write for the datastore file: %v", err))
		}
	}
	clear(d.pending)
	d.pending = d.pending[:0]
	live := d.countersLocked()
	for _, kind := range []byte{counterSeq, counterScat} {
		logged := j.logged.of(kind)
		for app, id := range live.of(kind) {
			if logged[app] != id {
				rec = append(rec, opCounter)
				rec = appendCounter(rec, kind, app, id)
				logged[app] = id
			}
		}
	}
	if len(rec) == empty {
		return 0
	}
	rec = endRecord(rec, start)
	if cap(rec) <= 1<<20 {
		j.scratch = rec
	} else {
		j.scratch = nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.sealed++
	if j.err != nil {
		// Never to be written: wait fails the ticket with j.err.
		return j.sealed
	}
	j.buf = append(j.buf, rec...)
	j.end += int64(len(rec))
	if j.sealedSignal != nil {
		select {
		case j.sealedSignal <- struct{}{}:
		default:
		}
	}
	return j.sealed
}

// appendMessage appends m's encoding with its length.
func appendMessage(dst []byte, o proto.MarshalOptions, m pmsg) ([]byte, error) {
	size := o.Size(m.m.Interface())
	dst = binary.AppendUvarint(dst, uint64(size))
	return o.MarshalAppend(dst, m.m.Interface())
}

// wait returns once record ticket is durable. The first waiter to find no
// write in progress writes and syncs every record sealed so far, for
// everyone.
func (j *journal) wait(ticket uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		switch {
		case j.durable >= ticket:
			return nil
		case j.err != nil:
			return j.err
		case j.closed:
			return errJournalClosed
		case !j.flushing:
			j.gatherLocked()
			j.flushLocked()
		default:
			j.cond.Wait()
		}
	}
}

// gatherLocked lets the next batch fill before it is written, when writers
// are concurrent: until it holds one more record than the largest of the
// recent batches, or for a quarter of a sync. Without it, concurrent
// writers split into two halves whose batches alternate (a writer whose
// record is being synced cannot add to the next batch), and a slow disk
// syncs half of them at a time. A lone writer never waits. j.mu is held on
// entry and exit.
func (j *journal) gatherLocked() {
	want := uint64(0)
	for _, n := range j.recentBatches {
		want = max(want, n)
	}
	want++
	if want <= 2 || j.avgSync <= 0 || j.sealed-j.durable >= want {
		return
	}
	wait := time.NewTimer(min(j.avgSync/4, time.Millisecond))
	defer wait.Stop()
	j.flushing = true // no one else starts a flush meanwhile
	j.sealedSignal = make(chan struct{}, 1)
	for j.sealed-j.durable < want && !j.closed {
		j.mu.Unlock()
		timedOut := false
		select {
		case <-j.sealedSignal:
		case <-wait.C:
			timedOut = true
		}
		j.mu.Lock()
		if timedOut {
			break
		}
	}
	j.sealedSignal = nil
	j.flushing = false
}

// flushLocked writes and syncs the queued records. j.mu is held on entry
// and exit but not while writing.
func (j *journal) flushLocked() {
	buf, upto, f := j.buf, j.sealed, j.f
	j.buf = nil
	j.flushing = true
	j.mu.Unlock()
	start := time.Now()
	_, err := f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	took := time.Since(start)
	j.mu.Lock()
	j.flushing = false
	j.syncTime += took
	if err != nil {
		j.failLocked(err)
	} else {
		j.recentBatches[j.syncs%uint64(len(j.recentBatches))] = upto - j.durable
		j.avgSync = (3*j.avgSync + took) / 4
		j.written += int64(len(buf))
		j.durable = upto
		j.syncs++
		if j.buf == nil && cap(buf) <= 1<<20 {
			j.buf = buf[:0]
		}
		j.maybeCompactLocked()
	}
	j.cond.Broadcast()
}

func (j *journal) failLocked(err error) {
	if j.err == nil {
		j.err = fmt.Errorf("writing the datastore file %s failed (%v); every later write fails until the server restarts", j.path, err)
		log.Printf("aelocal: %v", j.err)
	}
	// Records sealed meanwhile will never be written: drop them, so that
	// the buffer cannot grow.
	j.buf = nil
}

// maybeCompactLocked starts a compaction when the log behind the snapshot
// has grown past the snapshot's own size (and compactMinBytes). j.mu must
// be held.
func (j *journal) maybeCompactLocked() {
	logBytes := j.written - j.snapEnd
	if j.compacting || j.closing || j.closed || j.err != nil || logBytes < j.compactMinBytes || logBytes < j.snapEnd || logBytes < j.compactBackoff {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.compacting, j.cancelCompact = true, cancel
	j.compactDone.Add(1)
	go func() {
		defer j.compactDone.Done()
		err := j.compact(ctx)
		j.mu.Lock()
		j.compacting = false
		if err != nil && !errors.Is(err, context.Canceled) {
			// Retry once the log has doubled; until then appends go on.
			j.compactBackoff = 2 * (j.written - j.snapEnd)
			log.Printf("aelocal: compacting the datastore file %s failed: %v (the file stays valid; it is only larger)", j.path, err)
		}
		j.mu.Unlock()
		cancel()
	}()
}

// compact rewrites the file as a snapshot of the datastore followed by the
// records sealed while the snapshot was written.
func (j *journal) compact(ctx context.Context) error {
	j.rewriteMu.Lock()
	defer j.rewriteMu.Unlock()
	d := j.d
	d.mu.Lock()
	ents, counters := d.snapshotLocked()
	j.mu.Lock()
	from := j.end // the first record the snapshot does not cover starts here
	j.mu.Unlock()
	d.mu.Unlock()

	tmp, err := j.createTemp()
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := writeSnapshot(ctx, tmp, ents, counters)
	if err == nil {
		// Synced now, the snapshot costs the switch, during which writers
		// wait, only the sync of the few records copied behind it.
		err = tmp.Sync()
	}
	if err != nil {
		return err
	}
	err = j.switchTo(tmp, n, from)
	ok = err == nil
	return err
}

// switchTo makes tmp, which holds a snapshot of snapLen bytes, the
// datastore file. With from >= 0 the records sealed from offset from of the
// current file on are copied behind the snapshot (compaction); with from <
// 0 the queued records are superseded by the snapshot (LoadDatastore,
// which holds d.mu, so none can be added meanwhile).
func (j *journal) switchTo(tmp *os.File, snapLen, from int64) error {
	j.mu.Lock()
	for j.flushing {
		j.cond.Wait()
	}
	if j.closed {
		j.mu.Unlock()
		return errJournalClosed
	}
	if j.err != nil {
		err := j.err
		j.mu.Unlock()
		return err
	}
	j.flushing = true
	buf, upto, old, written := j.buf, j.sealed, j.f, j.written
	j.buf = nil
	j.mu.Unlock()

	size := snapLen
	err := func() error {
		if from < 0 {
			return nil
		}
		tail := buf
		if from < written {
			n, err := io.Copy(tmp, io.NewSectionReader(old, from, written-from))
			size += n
			if err != nil {
				return err
			}
		} else {
			tail = buf[from-written:]
		}
		n, err := tmp.Write(tail)
		size += int64(n)
		return err
	}()
	if err == nil {
		err = j.install(tmp, old)
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	j.flushing = false
	j.cond.Broadcast()
	if err != nil {
		j.buf = append(buf, j.buf...)
		return err
	}
	old.Close()
	j.f = tmp
	j.written, j.snapEnd = size, snapLen
	j.end = size + int64(len(j.buf))
	j.durable = upto
	j.compactBackoff = 0
	return nil
}

// replaceLocked rewrites the file to hold im alone. j.rewriteMu and d.mu
// must be held.
func (j *journal) replaceLocked(im *dsImage) error {
	tmp, err := j.createTemp()
	if err != nil {
		return err
	}
	n, err := writeSnapshot(context.Background(), tmp, imageEntities(im), im.ids)
	if err == nil {
		err = j.switchTo(tmp, n, -1)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("aelocal: rewriting the datastore file %s: %w", j.path, err)
	}
	j.logged = im.ids.clone()
	return nil
}

// close stops a compaction in progress (removing its temporary file),
// writes and syncs what is queued, and closes the file. Writes after close
// fail.
func (j *journal) close() error {
	j.mu.Lock()
	if j.closed || j.closing {
		j.mu.Unlock()
		return nil
	}
	j.closing = true
	if j.cancelCompact != nil {
		j.cancelCompact()
	}
	j.mu.Unlock()
	j.compactDone.Wait()

	j.mu.Lock()
	defer j.mu.Unlock()
	for j.flushing {
		j.cond.Wait()
	}
	if len(j.buf) > 0 && j.err == nil {
		j.flushLocked()
		for j.flushing {
			j.cond.Wait()
		}
	}
	j.closed = true
	j.cond.Broadcast()
	err := j.f.Close()
	if j.err != nil {
		return j.err
	}
	return err
}
