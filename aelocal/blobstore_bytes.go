package aelocal

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// blobBytes keeps the bytes of blobs: in files of a directory (beside the
// datastore file), or in memory up to blobMemoryLimit for all blobs.
type blobBytes struct {
	dir string // "" in memory

	mu       sync.Mutex
	mem      map[string][]byte
	held     int64 // bytes in mem plus bytes reserved by uploads under way
	memLimit int64
}

// errBlobSpace is the error of an upload past the memory of the blobstore.
var errBlobSpace = errors.New("the blobstore's memory is full")

// errBlobTooLarge is the error of a blob past its upload's limit.
var errBlobTooLarge = errors.New("the blob is larger than the upload allows")

func newBlobBytes(dir string) *blobBytes {
	return &blobBytes{dir: dir, mem: make(map[string][]byte), memLimit: blobMemoryLimit}
}

// create stores what r yields, at most limit bytes (limit < 0: none), as
// the blob key, and returns its size and MD5 as hex. On error nothing is
// kept.
func (b *blobBytes) create(key string, r io.Reader, limit int64) (int64, string, error) {
	h := md5.New()
	r = io.TeeReader(r, h)
	if b.dir != "" {
		n, err := b.createFile(key, r, limit)
		return n, hex.EncodeToString(h.Sum(nil)), err
	}
	var buf bytes.Buffer
	var chunk [32 << 10]byte
	reserved := int64(0)
	release := func() {
		b.mu.Lock()
		b.held -= reserved
		b.mu.Unlock()
	}
	for {
		n, err := r.Read(chunk[:])
		if n > 0 {
			if limit >= 0 && int64(buf.Len()+n) > limit {
				release()
				return 0, "", errBlobTooLarge
			}
			b.mu.Lock()
			ok := b.held+int64(n) <= b.memLimit
			if ok {
				b.held += int64(n)
				reserved += int64(n)
			}
			b.mu.Unlock()
			if !ok {
				release()
				return 0, "", errBlobSpace
			}
			buf.Write(chunk[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			release()
			return 0, "", err
		}
	}
	b.mu.Lock()
	b.mem[key] = bytes.Clone(buf.Bytes())
	b.mu.Unlock()
	return int64(buf.Len()), hex.EncodeToString(h.Sum(nil)), nil
}

// createFile writes the blob to a temporary file and renames it into
// place once complete and synced, so a blob file is always whole.
func (b *blobBytes) createFile(key string, r io.Reader, limit int64) (n int64, err error) {
	// Mkdir, not MkdirAll: the datastore file is in the directory above.
	if err := os.Mkdir(b.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return 0, err
	}
	f, err := os.CreateTemp(b.dir, ".upload-*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if limit >= 0 {
		r = io.LimitReader(r, limit+1)
	}
	if n, err = io.Copy(f, r); err != nil {
		return 0, err
	}
	if limit >= 0 && n > limit {
		return 0, errBlobTooLarge
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	return n, os.Rename(f.Name(), b.file(key))
}

// file is the file of a blob key. Keys aelocal makes are URL-safe base64;
// others are hex-encoded so that no key can name a path elsewhere.
func (b *blobBytes) file(key string) string {
	return filepath.Join(b.dir, "blob-"+hex.EncodeToString([]byte(key)))
}

// blobReader reads a blob's bytes.
type blobReader interface {
	io.ReaderAt
	io.Closer
}

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// open returns a reader of the blob key and its size.
func (b *blobBytes) open(key string) (blobReader, int64, error) {
	if b.dir != "" {
		f, err := os.Open(b.file(key))
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	b.mu.Lock()
	data, ok := b.mem[key]
	b.mu.Unlock()
	if !ok {
		return nil, 0, fmt.Errorf("no bytes for the blob")
	}
	return memBlob{bytes.NewReader(data)}, int64(len(data)), nil
}

// remove forgets the blob key's bytes; a blob that has none is no error.
func (b *blobBytes) remove(key string) error {
	if b.dir != "" {
		if err := os.Remove(b.file(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if data, ok := b.mem[key]; ok {
		b.held -= int64(len(data))
		delete(b.mem, key)
	}
	return nil
}
