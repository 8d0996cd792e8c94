package aelocal

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// newFileServer starts a server that keeps its datastore in path; the test
// closes it when it ends (closing twice is harmless).
func newFileServer(t testing.TB, path string) *Server {
	t.Helper()
	s, err := NewServerOptions(&Options{DatastorePath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// saved returns what SaveDatastore writes for s: equal datastores give
// equal bytes.
func saved(t testing.TB, s *Server) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.SaveDatastore(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fItem struct {
	V string `datastore:",noindex"`
	N int
}

func TestDatastoreFileKeepsWritesAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	k1 := datastore.NewKey(ctx, "P", "one", 0, nil)
	if _, err := datastore.Put(ctx, k1, &fItem{V: "one"}); err != nil {
		t.Fatal(err)
	}
	auto, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "P", nil), &fItem{V: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	// An automatic ID whose entity is gone stays taken too.
	goneAuto, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "P", nil), &fItem{V: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := datastore.Delete(ctx, goneAuto); err != nil {
		t.Fatal(err)
	}
	// And one handed out in a transaction that rolled back: only the
	// counter remembers it.
	var rolledBack *datastore.Key
	errRollback := errors.New("roll back")
	if err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		var err error
		if rolledBack, err = datastore.Put(tc, datastore.NewIncompleteKey(tc, "P", nil), &fItem{V: "never"}); err != nil {
			return err
		}
		return errRollback
	}, nil); err != errRollback {
		t.Fatal(err)
	}
	gone := datastore.NewKey(ctx, "P", "gone", 0, nil)
	datastore.Put(ctx, gone, &fItem{V: "gone"})
	if err := datastore.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	// IDs handed out by AllocateIDs, never used by an entity, stay taken.
	lo, hi, err := datastore.AllocateIDs(ctx, "P", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		_, err := datastore.Put(tc, datastore.NewKey(tc, "P", "tx", 0, nil), &fItem{V: "tx"})
		return err
	}, nil); err != nil {
		t.Fatal(err)
	}
	before := saved(t, s)
	s.Close()

	s = newFileServer(t, path)
	ctx = middlewareContext(t, s)
	if got := saved(t, s); !bytes.Equal(got, before) {
		t.Fatal("the reopened datastore differs from the one closed")
	}
	var x fItem
	if err := datastore.Get(ctx, k1, &x); err != nil || x.V != "one" {
		t.Fatalf("Get %v: %+v, %v", k1, x, err)
	}
	if err := datastore.Get(ctx, auto, &x); err != nil || x.V != "auto" {
		t.Fatalf("Get %v: %+v, %v", auto, x, err)
	}
	if err := datastore.Get(ctx, gone, &x); err != datastore.ErrNoSuchEntity {
		t.Fatalf("Get of a deleted entity: %v", err)
	}
	next, _, err := datastore.AllocateIDs(ctx, "P", nil, 1)
	if err != nil || next < hi || hi <= lo {
		t.Fatalf("AllocateIDs gave %d after [%d, %d) before the restart (%v)", next, lo, hi, err)
	}
	taken := map[int64]bool{auto.IntID(): true, goneAuto.IntID(): true, rolledBack.IntID(): true}
	for range taken {
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "P", nil), &x)
		if err != nil || taken[k.IntID()] {
			t.Fatalf("new automatic ID %v was handed out before the restart (%v)", k, err)
		}
	}
}

func TestDatastoreFileRefusesBadPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o644)
	cases := map[string]struct{ path, want string }{
		"missing directory":      {filepath.Join(dir, "nope", "ds.db"), "does not exist"},
		"parent is a file":       {filepath.Join(file, "ds.db"), "not a directory"},
		"path is a directory":    {dir, "not a regular file"},
		"read-only file system":  {"/proc/aelocal-test.db", "cannot create files"},
		"unwritable directory":   {filepath.Join(dir, "ro", "ds.db"), "cannot create files"},
		"empty file, not format": {filepath.Join(dir, "empty.db"), "not an aelocal datastore file"},
	}
	os.Mkdir(filepath.Join(dir, "ro"), 0o555)
	os.WriteFile(filepath.Join(dir, "empty.db"), nil, 0o644)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			switch name {
			case "read-only file system":
				if _, err := os.Stat("/proc/self"); err != nil {
					t.Skip("no /proc")
				}
			case "unwritable directory":
				if os.Geteuid() == 0 {
					t.Skip("root writes to any directory")
				}
			}
			s, err := NewServerOptions(&Options{DatastorePath: c.path})
			if err == nil {
				s.Close()
				t.Fatalf("%s: accepted", c.path)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: %v, want an error saying %q", c.path, err, c.want)
			}
		})
	}
}

func TestDatastoreFileIsExclusive(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	path := filepath.Join(t.TempDir(), "ds.db")
	s := newFileServer(t, path)
	if _, err := NewServerOptions(&Options{DatastorePath: path}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second server on one file: %v", err)
	}
	s.Close()
	newFileServer(t, path).Close()
}

// fileWithValue makes a datastore file holding one entity whose value is
// marker, with the entity in the snapshot or in the log, and returns the
// file's bytes.
func fileWithValue(t *testing.T, path, marker string, inSnapshot bool) []byte {
	t.Helper()
	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	for i, v := range []string{"before", marker, "after"} {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "P", fmt.Sprint(i), 0, nil), &fItem{V: v}); err != nil {
			t.Fatal(err)
		}
	}
	if inSnapshot {
		if err := s.LoadDatastore(bytes.NewReader(saved(t, s))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDatastoreFileRefusesFlippedBytes(t *testing.T) {
	const marker = "a value that must not change"
	for _, where := range []string{"log", "snapshot"} {
		t.Run(where, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ds.db")
			b := fileWithValue(t, path, marker, where == "snapshot")
			i := bytes.Index(b, []byte(marker))
			if i < 0 {
				t.Fatal("marker not in the file")
			}
			b[i+5] ^= 0x20 // "a value" -> "a vAlue"
			os.WriteFile(path, b, 0o600)
			_, err := NewServerOptions(&Options{DatastorePath: path})
			var ce *CorruptFileError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "left as it is") {
				t.Fatalf("flipped byte: %v, want a CorruptFileError about a checksum", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Fatal("the corrupt file was changed")
			}
			// LoadDatastore checks the same way.
			if err := newTestServer(t).LoadDatastore(bytes.NewReader(b)); !errors.As(err, &ce) {
				t.Fatalf("LoadDatastore of the corrupt file: %v", err)
			}
		})
	}
}

// lastRecord returns the offset of the last record of a datastore file.
func lastRecord(t *testing.T, b []byte) int {
	t.Helper()
	off, last := len(fileMagic), -1
	for off+frameHeader <= len(b) {
		last = off
		off += frameHeader + int(binary.LittleEndian.Uint32(b[off:]))
	}
	if off != len(b) || last < 0 {
		t.Fatalf("records do not end at the end of the file (%d of %d)", off, len(b))
	}
	return last
}

func TestDatastoreFileTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	b := fileWithValue(t, path, "marker", false)
	last := lastRecord(t, b) // the Put of "after"
	for name, damaged := range map[string][]byte{
		"cut in the body":      b[:len(b)-3],
		"cut in the header":    b[:last+5],
		"zeros instead":        append(b[:last:last], make([]byte, 300)...),
		"zeros after the file": append(append([]byte{}, b...), make([]byte, 100)...),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".db")
			os.WriteFile(p, damaged, 0o600)
			s := newFileServer(t, p)
			ctx := middlewareContext(t, s)
			var x fItem
			if err := datastore.Get(ctx, datastore.NewKey(ctx, "P", "1", 0, nil), &x); err != nil || x.V != "marker" {
				t.Fatalf("an entity before the torn record: %+v, %v", x, err)
			}
			lost := name != "zeros after the file"
			if err := datastore.Get(ctx, datastore.NewKey(ctx, "P", "2", 0, nil), &x); (err == datastore.ErrNoSuchEntity) != lost {
				t.Fatalf("the entity of the last record: %v (torn: %v)", err, lost)
			}
			// Appends go on from the good end, and the file reloads.
			if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "P", "new", 0, nil), &x); err != nil {
				t.Fatal(err)
			}
			before := saved(t, s)
			s.Close()
			if got := saved(t, newFileServer(t, p)); !bytes.Equal(got, before) {
				t.Fatal("reloaded datastore differs")
			}
		})
	}
}

func TestDatastoreFileRefusesDamagedLength(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	b := fileWithValue(t, path, "marker", false)
	// The length of a record in the middle, made to reach past the end:
	// were it trusted, the rest would look like a torn tail and be lost.
	off := len(fileMagic)
	for i := 0; i < 3; i++ { // magic, counters, end of snapshot: first batch
		off += frameHeader + int(binary.LittleEndian.Uint32(b[off:]))
	}
	b[off+2] ^= 0x01
	os.WriteFile(path, b, 0o600)
	_, err := NewServerOptions(&Options{DatastorePath: path})
	var ce *CorruptFileError
	if !errors.As(err, &ce) || ce.Offset != int64(off) || !strings.Contains(ce.Reason, "header checksum") {
		t.Fatalf("damaged length: %v, want a CorruptFileError at %d", err, off)
	}
}

func TestDatastoreFileReadsOldGobFormat(t *testing.T) {
	// Make a file as aelocal wrote it before format 2.
	src := newTestServer(t)
	ctx := middlewareContext(t, src)
	k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Old", nil), &fItem{V: "old"})
	if err != nil {
		t.Fatal(err)
	}
	src.datastore.mu.Lock()
	e := src.datastore.lookupLocked(nsKey{app: k.AppID()}, dsPath{{kind: "Old", id: k.IntID()}})
	src.datastore.mu.Unlock()
	eb, _ := e.msg().Marshal()
	var old bytes.Buffer
	gob.NewEncoder(&old).Encode(&gobFile{Format: gobFileFormat, Counters: []gobCounter{{k.AppID(), 1000}}, Entities: [][]byte{eb}})

	path := filepath.Join(t.TempDir(), "old.gob")
	os.WriteFile(path, old.Bytes(), 0o644)
	s := newFileServer(t, path)
	ctx = middlewareContext(t, s)
	var x fItem
	if err := datastore.Get(ctx, k, &x); err != nil || x.V != "old" {
		t.Fatalf("Get from the old file: %+v, %v", x, err)
	}
	if nk, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Old", nil), &x); err != nil || nk.IntID() < 1000 {
		t.Fatalf("the old file's ID counter was not kept: %v, %v", nk, err)
	}
	s.Close()
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte(fileMagic)) {
		t.Fatal("the old file was not converted to format 2")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("conversion changed the file's permissions to %v", st.Mode().Perm())
	}
	newFileServer(t, path)
}

// TestDatastoreFileCompaction runs writers while the file is compacted
// again and again, then checks that the file reloads to exactly the
// datastore that was closed.
func TestDatastoreFileCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	s := newFileServer(t, path)
	j := s.datastore.journal
	j.mu.Lock()
	j.compactMinBytes = 4 << 10
	j.mu.Unlock()
	ctx := middlewareContext(t, s)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 150; i++ {
				k := datastore.NewKey(ctx, "C", fmt.Sprintf("g%d-%d", g, r.Intn(40)), 0, nil)
				var err error
				if r.Intn(4) == 0 {
					err = datastore.Delete(ctx, k)
				} else {
					_, err = datastore.Put(ctx, k, &fItem{V: strings.Repeat("x", r.Intn(2000)), N: i})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	j.mu.Lock()
	compacted := j.snapEnd > int64(len(fileMagic)+3*frameHeader+10)
	j.mu.Unlock()
	if !compacted {
		t.Fatal("no compaction happened")
	}
	before := saved(t, s)
	s.Close()
	if got := saved(t, newFileServer(t, path)); !bytes.Equal(got, before) {
		t.Fatal("the compacted file reloads to another datastore")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left in the directory: %v", entries)
	}
}

func TestDatastoreFileRemovesTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	newFileServer(t, path).Close()
	// What a kill during a rewrite leaves behind; another file's
	// temporary file is not ours to remove.
	os.WriteFile(path+tempInfix+"123", []byte("half a snapshot"), 0o600)
	os.WriteFile(filepath.Join(dir, "other.db"+tempInfix+"1"), nil, 0o600)
	newFileServer(t, path).Close()
	if _, err := os.Stat(path + tempInfix + "123"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db"+tempInfix+"1")); err != nil {
		t.Fatalf("another file's temporary file was removed: %v", err)
	}
}

func TestLoadDatastoreRewritesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	src := newTestServer(t)
	sctx := middlewareContext(t, src)
	for i := 0; i < 20; i++ {
		datastore.Put(sctx, datastore.NewKey(sctx, "L", fmt.Sprint(i), 0, nil), &fItem{N: i})
	}
	want := saved(t, src)

	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	datastore.Put(ctx, datastore.NewKey(ctx, "Replaced", "x", 0, nil), &fItem{})
	if err := s.LoadDatastore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "L", "after", 0, nil), &fItem{N: 99}); err != nil {
		t.Fatal(err)
	}
	before := saved(t, s)
	s.Close()
	s = newFileServer(t, path)
	if got := saved(t, s); !bytes.Equal(got, before) {
		t.Fatal("the file does not hold the loaded datastore")
	}
	if n, _ := datastore.NewQuery("Replaced").Count(middlewareContext(t, s)); n != 0 {
		t.Fatal("an entity from before LoadDatastore came back")
	}
}

// A write the file cannot take fails, and so does every later one: the
// datastore must not answer writes it cannot keep.
func TestDatastoreFileWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	k := datastore.NewKey(ctx, "W", "k", 0, nil)
	if _, err := datastore.Put(ctx, k, &fItem{V: "kept"}); err != nil {
		t.Fatal(err)
	}
	failJournalWrites(t, s, path)
	_, err := datastore.Put(ctx, k, &fItem{V: "lost"})
	wantAPIError(t, err, "INTERNAL_ERROR", "may not survive a restart")
	_, _, err = datastore.AllocateIDs(ctx, "W", nil, 5)
	wantAPIError(t, err, "INTERNAL_ERROR", "every later write fails")
	var x fItem
	if err := datastore.Get(ctx, k, &x); err != nil {
		t.Fatalf("reads go on: %v", err)
	}
	// Later writes are refused before they change anything, in memory or
	// on disk, and leave nothing behind in the journal's buffer.
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	before := saved(t, s)
	big := strings.Repeat("x", 100<<10)
	for i := 0; i < 50; i++ {
		_, err := datastore.Put(ctx, datastore.NewKey(ctx, "W", fmt.Sprint("new", i), 0, nil), &fItem{V: big})
		wantAPIError(t, err, "INTERNAL_ERROR", "refused")
	}
	_, err = datastore.Put(ctx, k, &fItem{V: "later"})
	wantAPIError(t, err, "INTERNAL_ERROR", "refused")
	_, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "W", nil), &fItem{})
	wantAPIError(t, err, "INTERNAL_ERROR", "refused")
	wantAPIError(t, datastore.Delete(ctx, k), "INTERNAL_ERROR", "refused")
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		_, err := datastore.Put(tc, k, &fItem{V: "in a transaction"})
		return err
	}, nil)
	wantAPIError(t, err, "INTERNAL_ERROR", "refused")
	if after := saved(t, s); !bytes.Equal(after, before) {
		t.Fatal("a refused write changed the datastore in memory")
	}
	if err := datastore.Get(ctx, k, &x); err != nil || x.V == "later" {
		t.Fatalf("after a refused Put: %+v, %v", x, err)
	}
	if st2, err := os.Stat(path); err != nil || st2.Size() != st.Size() {
		t.Fatalf("the file changed: %d bytes, was %d (%v)", st2.Size(), st.Size(), err)
	}
	j := s.datastore.journal
	j.mu.Lock()
	buffered := len(j.buf)
	j.mu.Unlock()
	if buffered != 0 {
		t.Fatalf("refused writes left %d bytes in the journal's buffer", buffered)
	}
}

// A transaction handle a client kept from before a restart must not name
// another client's transaction after it.
func TestHandlesDoNotSurviveARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	begin := func(ctx context.Context) pmsg {
		t.Helper()
		app := datastore.NewKey(ctx, "K", "k", 0, nil).AppID()
		tx, err := rawCall(ctx, "BeginTransaction", "appengine.v2.BeginTransactionRequest", "appengine.v2.Transaction", func(r pmsg) { r.Set("app", app) })
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	s := newFileServer(t, path)
	old := begin(middlewareContext(t, s))
	s.Close()

	s = newFileServer(t, path)
	ctx := middlewareContext(t, s)
	begin(ctx) // another client's
	_, err := rawCall(ctx, "Commit", "appengine.v2.Transaction", "appengine.v2.CommitResponse", func(r pmsg) { r.CopyFrom(old) })
	wantAPIError(t, err, "BAD_REQUEST", "unknown")
}

// A server that fails to start after it opened its datastore file must
// close the file again: else the file stays locked (and open) for the life
// of the process, and the next server on it is refused.
func TestFailedStartReleasesTheDatastoreFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	_, err := NewServerOptions(&Options{DatastorePath: path, CronYAML: filepath.Join(dir, "missing-cron.yaml")})
	if err == nil {
		t.Fatal("a missing cron.yaml was accepted")
	}
	newFileServer(t, path).Close()
}

// failJournalWrites makes every later write to s's datastore file at path
// fail, as a full or failed disk would: the journal writes to a read-only
// handle of the same file from then on.
func failJournalWrites(t *testing.T, s *Server, path string) {
	t.Helper()
	j := s.datastore.journal
	ro, err := os.Open(path) // writes to it fail
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	good := j.f
	j.f = ro
	j.mu.Unlock()
	t.Cleanup(func() { good.Close() })
}
