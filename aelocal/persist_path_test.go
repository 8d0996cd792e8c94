package aelocal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// A symbolic link to nowhere as the datastore path is refused at once,
// with a message that says so, rather than looping forever trying to
// create the file.
func TestDatastorePathDanglingLink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges")
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "ds.db")
	if err := os.Symlink(filepath.Join(dir, "missing", "target.db"), link); err != nil {
		t.Fatal(err)
	}
	s, err := NewServerOptions(&Options{DatastorePath: link})
	if err == nil {
		s.Close()
		t.Fatal("a dangling link was accepted")
	}
	if !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("%v, want an error that names the symbolic link", err)
	}
}

// A symbolic link as the datastore path is followed once, at start: the
// target is the file the server locks, appends to and rewrites for its
// whole life, and compaction leaves the link a link.
func TestDatastorePathLinkIsFollowedOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges")
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	target := filepath.Join(dir, "data", "real.db")
	link := filepath.Join(dir, "ds.db")
	newFileServer(t, target).Close()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	s := newFileServer(t, link)
	j := s.datastore.journal
	j.mu.Lock()
	j.compactMinBytes = 4 << 10
	j.mu.Unlock()
	ctx := middlewareContext(t, s)
	for i := 0; i < 40; i++ {
		k := datastore.NewKey(ctx, "C", "", int64(i%4+1), nil)
		if _, err := datastore.Put(ctx, k, &fItem{V: strings.Repeat("x", 1000), N: i}); err != nil {
			t.Fatal(err)
		}
	}
	j.compactDone.Wait()
	j.mu.Lock()
	compacted := j.snapEnd > int64(len(fileMagic)+3*frameHeader+10)
	j.mu.Unlock()
	if !compacted {
		t.Fatal("no compaction happened")
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", st.Mode(), err)
	}
	// The target is the file in use: locked against a second server.
	if runtime.GOOS != "windows" {
		if s2, err := NewServerOptions(&Options{DatastorePath: target}); err == nil || !strings.Contains(err.Error(), "in use") {
			if s2 != nil {
				s2.Close()
			}
			t.Fatalf("a second server on the link's target: %v", err)
		}
	}
	want := saved(t, s)
	s.Close()
	if got := saved(t, newFileServer(t, target)); !bytes.Equal(got, want) {
		t.Fatal("the link's target does not hold the datastore")
	}
}

// LoadDatastore refuses a stream cut short anywhere inside a record, in
// its snapshot or its log, and changes nothing, on a server with a file
// too: only the server's own file may end in a torn record, after a kill.
func TestLoadDatastoreRefusesTruncatedStreams(t *testing.T) {
	b := fileWithValue(t, filepath.Join(t.TempDir(), "src.db"), "marker", false)
	boundary := map[int]bool{len(fileMagic): true}
	for off := len(fileMagic); off < len(b); {
		off += frameHeader + int(binary.LittleEndian.Uint32(b[off:]))
		boundary[off] = true
	}
	path := filepath.Join(t.TempDir(), "ds.db")
	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Kept", "k", 0, nil), &fItem{V: "kept"}); err != nil {
		t.Fatal(err)
	}
	want := saved(t, s)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for n := len(fileMagic) + 1; n < len(b); n++ {
		if boundary[n] {
			continue // a shorter file, as valid as a whole one
		}
		err := s.LoadDatastore(bytes.NewReader(b[:n]))
		var ce *CorruptFileError
		if !errors.As(err, &ce) {
			t.Fatalf("cut at byte %d of %d: %v, want a CorruptFileError", n, len(b), err)
		}
		refused++
	}
	if got := saved(t, s); !bytes.Equal(got, want) {
		t.Fatal("a refused load changed the datastore")
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, file) {
		t.Fatalf("a refused load changed the file (%v)", err)
	}
	t.Logf("%d truncations refused", refused)
}
