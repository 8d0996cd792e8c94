package aelocal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// fileRecord is a record of a datastore file of format 2.
type fileRecord struct {
	typ     byte
	payload []byte
}

// fileRecords splits b, a datastore file without damage, into its records.
func fileRecords(t *testing.T, b []byte) []fileRecord {
	t.Helper()
	var recs []fileRecord
	for off := len(fileMagic); off < len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		body := b[off+frameHeader : off+frameHeader+n]
		recs = append(recs, fileRecord{typ: body[0], payload: body[1:]})
		off += frameHeader + n
	}
	return recs
}

// assemble writes recs as a datastore file, each with good checksums, and
// returns it and the offset of each record.
func assemble(recs []fileRecord) ([]byte, []int64) {
	b := []byte(fileMagic)
	offs := make([]int64, len(recs))
	for i, r := range recs {
		offs[i] = int64(len(b))
		var start int
		b, start = beginRecord(b, r.typ)
		b = endRecord(append(b, r.payload...), start)
	}
	return b, offs
}

// checkKindIndexes checks that every kind of s has its kind index, that
// no kind index is empty, and returns the number of entities.
func checkKindIndexes(t *testing.T, s *Server) int {
	t.Helper()
	d := s.datastore
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for sp, space := range d.spaces {
		if len(space.idx) == 0 {
			t.Errorf("namespace %v is kept without a kind", sp)
		}
		for kind, ki := range space.idx {
			if ki == nil || ki.byKey.Len() == 0 {
				t.Errorf("kind %q of %v has an empty or no kind index", kind, sp)
				continue
			}
			n += ki.byKey.Len()
			ki.byKey.Ascend(func(e *dsEntity) bool {
				if kindOf(e.path) != kind || e.space() != sp {
					t.Errorf("entity %v of %v in kind %q of %v", e.path, e.sp, kind, sp)
				}
				return true
			})
		}
	}
	return n
}

type lItem struct {
	V int
	W string `datastore:",noindex"`
}

// TestLoadAppliesTheLogInOrder writes, through the client, a snapshot and
// then a long log of puts, overwrites and deletes of the same keys (of
// two kinds and a child kind under their entities, in two namespaces),
// and checks that a restart gives exactly the datastore that was closed:
// the log merged into the snapshot, the last write of each key winning.
func TestLoadAppliesTheLogInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	s := newFileServer(t, path)
	ctx := middlewareContext(t, s)
	nsCtx, err := appengine.Namespace(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewSource(25))
	key := func(i int) *datastore.Key {
		c := ctx
		if i%7 == 0 {
			c = nsCtx
		}
		parent := datastore.NewKey(c, []string{"A", "B"}[i%2], "", int64(i%40+1), nil)
		if i%3 == 0 {
			return parent
		}
		return datastore.NewKey(c, "C", fmt.Sprint(i), 0, parent)
	}
	write := func(rounds int) {
		for r := range rounds {
			var keys []*datastore.Key
			var vals []lItem
			seen := map[string]bool{}
			for range 50 {
				k := key(rnd.Intn(300))
				if !seen[k.String()] {
					seen[k.String()] = true
					keys = append(keys, k)
					vals = append(vals, lItem{V: r, W: fmt.Sprint(rnd.Int())})
				}
			}
			if r%4 == 3 {
				if err := datastore.DeleteMulti(ctx, keys[:10]); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(20)
	// A snapshot, then the log.
	if err := s.LoadDatastore(bytes.NewReader(saved(t, s))); err != nil {
		t.Fatal(err)
	}
	write(120) // about 4,500 puts of 300 keys: the log is squashed on the way
	before := saved(t, s)
	n := checkKindIndexes(t, s)
	s.Close()

	b, _ := os.ReadFile(path)
	var snapshotEntities, logBatches int
	for _, r := range fileRecords(t, b) {
		switch r.typ {
		case recEntity:
			snapshotEntities++
		case recBatch:
			logBatches++
		}
	}
	if snapshotEntities == 0 || logBatches < 100 {
		t.Fatalf("the file holds %d snapshot entities and %d batches: not the case tested", snapshotEntities, logBatches)
	}
	s = newFileServer(t, path)
	if got := saved(t, s); !bytes.Equal(got, before) {
		t.Fatal("the reopened datastore differs from the one closed")
	}
	if got := checkKindIndexes(t, s); got != n {
		t.Fatalf("%d entities after the restart, %d before", got, n)
	}
}

// snapshotRecords makes a server with n entities of kind "S", saves it,
// and returns the records of the snapshot.
func snapshotRecords(t *testing.T, n int) []fileRecord {
	t.Helper()
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	for lo := 0; lo < n; lo += 500 {
		var keys []*datastore.Key
		var vals []lItem
		for i := lo; i < min(n, lo+500); i++ {
			keys = append(keys, datastore.NewKey(ctx, "S", "", int64(i+1), nil))
			vals = append(vals, lItem{V: i})
		}
		if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
			t.Fatal(err)
		}
	}
	return fileRecords(t, saved(t, s))
}

// TestLoadReportsTheFirstBadRecord damages two records of a snapshot of
// several chunks, one that fails its checksum and one whose checksum
// holds but whose entity does not decode, and checks that the load
// reports the first of the two in the file, whichever goroutine finds it;
// and that a torn tail after a bad record does not hide it.
func TestLoadReportsTheFirstBadRecord(t *testing.T) {
	recs := snapshotRecords(t, 3*loadChunkRecords)
	if recs[0].typ != recCounters || recs[len(recs)-1].typ != recSnapshotEnd {
		t.Fatalf("unexpected snapshot layout")
	}
	undecodable := append([]byte{}, recs[1].payload...)
	undecodable[0] = 0xff // not a field of an EntityProto
	for _, c := range []struct {
		name           string
		badAt, flipAt  int // records: one that does not decode, one whose checksum fails (-1: none)
		torn           bool
		wantFirstIsBad bool
	}{
		{"undecodable first", 10, 2*loadChunkRecords + 5, false, true},
		{"checksum first", 2*loadChunkRecords + 5, 10, false, false},
		{"both in one chunk", 101, 100, false, false},
		{"undecodable last, then a torn tail", len(recs) - 2, -1, true, true},
		{"undecodable alone", loadChunkRecords + 1, -1, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			damaged := slices.Clone(recs)
			damaged[c.badAt].payload = undecodable
			b, offs := assemble(damaged)
			if c.flipAt >= 0 {
				b[offs[c.flipAt]+frameHeader+3] ^= 0x10
			}
			if c.torn {
				b = append(b, 40, 0, 0, 0, 1, 2) // a header cut short
			}
			want := offs[c.badAt]
			if !c.wantFirstIsBad {
				want = offs[c.flipAt]
			}
			err := newTestServer(t).LoadDatastore(bytes.NewReader(b))
			var ce *CorruptFileError
			if !errors.As(err, &ce) || ce.Offset != want {
				t.Fatalf("got %v, want a CorruptFileError at %d", err, want)
			}
			// And the same through a datastore file.
			path := filepath.Join(t.TempDir(), "ds.db")
			os.WriteFile(path, b, 0o600)
			_, err = NewServerOptions(&Options{DatastorePath: path})
			if !errors.As(err, &ce) || ce.Offset != want {
				t.Fatalf("datastore file: got %v, want a CorruptFileError at %d", err, want)
			}
		})
	}
}

// TestLoadSortsASnapshotOutOfOrder loads a snapshot whose entity records
// are not in key order, with a key twice: it loads as a sequential read
// of the records would, the last record of a key winning.
func TestLoadSortsASnapshotOutOfOrder(t *testing.T) {
	recs := snapshotRecords(t, 300)
	ents := recs[1 : len(recs)-1]
	// The same datastore, with entity 1 replaced by entity 2's value:
	// the record of key 1 comes twice, the later with the other value.
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	if err := s.LoadDatastore(bytes.NewReader(func() []byte { b, _ := assemble(recs); return b }())); err != nil {
		t.Fatal(err)
	}
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "S", "", 1, nil), &lItem{V: 1000}); err != nil {
		t.Fatal(err)
	}
	want := saved(t, s)
	k1 := fileRecords(t, want)[1] // key 1, V 1000

	shuffled := slices.Clone(ents)
	rand.New(rand.NewSource(1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	i := slices.IndexFunc(shuffled, func(r fileRecord) bool { return bytes.Equal(r.payload, ents[0].payload) })
	shuffled = slices.Insert(shuffled, i+1+(len(shuffled)-i-1)/2, k1) // after the first record of key 1
	out := append([]fileRecord{recs[0]}, shuffled...)
	out = append(out, fileRecord{typ: recSnapshotEnd, payload: binary.AppendUvarint(nil, uint64(len(shuffled)))})
	b, _ := assemble(out)
	s = newTestServer(t)
	if err := s.LoadDatastore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if got := saved(t, s); !bytes.Equal(got, want) {
		t.Fatal("the snapshot out of order loaded otherwise")
	}
	if n := checkKindIndexes(t, s); n != 300 {
		t.Fatalf("%d entities loaded, want 300", n)
	}
}
