package aelocal

import (
	"bufio"
	"encoding/gob"
	"fmt"
)

// Format 1: what SaveDatastore wrote before format 2, a single gob value.
// It is still read, so that a -datastore_path file made by an earlier
// aelocal loads (and is then rewritten in format 2). It has no checksums:
// only what gob and the entity decoder notice is detected.

const gobFileFormat = "aelocal datastore 1"

type gobFile struct {
	Format   string
	Counters []gobCounter // sequential IDs only; scattered ones follow from the keys
	Entities [][]byte     // encoded appengine.v2.EntityProto, keys complete
}

type gobCounter struct {
	App    string
	NextID int64
}

func readGobImage(r *bufio.Reader) (*dsImage, error) {
	var f gobFile
	if err := gob.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("not an aelocal datastore file (neither format 2 nor the gob format 1): %w", err)
	}
	if f.Format != gobFileFormat {
		return nil, fmt.Errorf("unknown datastore format %q", f.Format)
	}
	im := newImage()
	for _, c := range f.Counters {
		im.counter(counterSeq, c.App, c.NextID)
	}
	for i, b := range f.Entities {
		if err := im.putBytes(b); err != nil {
			return nil, fmt.Errorf("entity %d: %w", i, err)
		}
	}
	return im, nil
}
