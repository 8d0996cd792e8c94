package aelocal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The datastore file format (format 2), written by SaveDatastore and kept
// up to date record by record under Options.DatastorePath:
//
//	magic      "aelocal datastore 2\n"
//	snapshot   one counters record, an entity record per entity (in key
//	           order), one end record holding the entity count
//	log        batch records, one per group of writes, appended as the
//	           writes happen
//
// A record is a 12-byte frame header, then its body: one type byte and
// the payload. The header holds the body's length (uint32, little
// endian), the CRC-32C of the body, and the CRC-32C of those first 8
// bytes, so that a damaged length is told apart from a record that a kill
// cut short. Every byte of the file but the magic is covered by a
// checksum.
//
// A reader accepts exactly one kind of damage: a torn tail, the last
// record cut short (or followed only by zero bytes) because the process
// died while appending it. Such a record was never acknowledged: a write
// is answered only after its record is synced. Anything else that fails a
// check is corruption, and the file is refused with the offset and the
// reason.
const fileMagic = "aelocal datastore 2\n"

// Record types.
const (
	recCounters    = 'c' // payload: counters (see appendCounter)
	recEntity      = 'e' // payload: an encoded EntityProto
	recSnapshotEnd = 'z' // payload: uvarint number of entity records
	recBatch       = 'b' // payload: ops (see the op* constants)
)

// Ops of a batch record.
const (
	opPut     = 'p' // uvarint length, encoded EntityProto
	opDelete  = 'd' // uvarint length, encoded Reference
	opCounter = 'n' // a counter (see appendCounter)

	// Kinds of ID counters.
	counterSeq  = 'q' // sequential IDs, of AllocateIds
	counterScat = 's' // scattered IDs, of Puts with incomplete keys
)

const (
	frameHeader = 12
	// maxRecordBody bounds a record: a batch holds at most one commit,
	// whose entities are each under 1 MiB. A larger length in a header
	// whose checksum holds is refused as corrupt rather than allocated.
	maxRecordBody = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// beginRecord appends the frame header placeholder and the type byte of a
// new record to dst and returns dst and the record's start; endRecord
// fills in the header once the payload is appended.
func beginRecord(dst []byte, typ byte) ([]byte, int) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	return append(dst, typ), start
}

func endRecord(dst []byte, start int) []byte {
	body := dst[start+frameHeader:]
	h := dst[start : start+frameHeader]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[0:8], castagnoli))
	return dst
}

// appendCounter appends an app's next automatic ID: the counter's kind
// (counterSeq or counterScat), uvarint length, app, varint next value.
func appendCounter(dst []byte, kind byte, app string, next int64) []byte {
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(app)))
	dst = append(dst, app...)
	return binary.AppendVarint(dst, next)
}

func appendBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// errTornTail reports a last record cut short: the file is good up to
// the start of that record.
var errTornTail = errors.New("torn last record")

// CorruptFileError reports a datastore file, or a stream given to
// LoadDatastore, that fails a checksum or does not follow the format. The
// file is left as it is.
type CorruptFileError struct {
	Offset int64  // byte offset of the record at fault
	Reason string // what is wrong there
}

func (e *CorruptFileError) Error() string {
	return fmt.Sprintf("corrupt datastore file at byte %d: %s", e.Offset, e.Reason)
}

// recordReader reads the records of a datastore file, checking each.
type recordReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next record
	body []byte
}

func newRecordReader(r *bufio.Reader, off int64) *recordReader {
	return &recordReader{r: r, off: off}
}

func (rr *recordReader) corrupt(format string, args ...any) error {
	return &CorruptFileError{Offset: rr.off, Reason: fmt.Sprintf(format, args...)}
}

// next returns the type and payload of the next record, valid until the
// following call. At the clean end of the stream it returns io.EOF; at a
// torn tail errTornTail (rr.off is then the end of the good part).
func (rr *recordReader) next() (typ byte, payload []byte, err error) {
	var h [frameHeader]byte
	n, err := io.ReadFull(rr.r, h[:])
	switch {
	case err == io.EOF:
		return 0, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return 0, nil, errTornTail
	case err != nil:
		return 0, nil, err
	}
	if crc32.Checksum(h[0:8], castagnoli) != binary.LittleEndian.Uint32(h[8:12]) {
		// A filesystem may leave zeros where an unsynced append was
		// going to be; that too is a torn tail. Anything else is damage.
		if isZero(h[:n]) {
			zero, err := restIsZero(rr.r)
			if err != nil {
				return 0, nil, err
			}
			if zero {
				return 0, nil, errTornTail
			}
		}
		return 0, nil, rr.corrupt("record header checksum mismatch")
	}
	size := binary.LittleEndian.Uint32(h[0:4])
	if size == 0 || size > maxRecordBody {
		return 0, nil, rr.corrupt("record length %d out of range", size)
	}
	if cap(rr.body) < int(size) {
		rr.body = make([]byte, size)
	}
	body := rr.body[:size]
	if _, err := io.ReadFull(rr.r, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, nil, errTornTail
		}
		return 0, nil, err
	}
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
		return 0, nil, rr.corrupt("record checksum mismatch (%d-byte record)", size)
	}
	rr.off += frameHeader + int64(size)
	return body[0], body[1:], nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func restIsZero(r io.Reader) (bool, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if !isZero(buf[:n]) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// payloadReader takes apart a record payload.
type payloadReader struct {
	b   []byte
	bad bool
}

func (p *payloadReader) done() bool { return len(p.b) == 0 || p.bad }

func (p *payloadReader) byte() byte {
	if len(p.b) == 0 {
		p.bad = true
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

func (p *payloadReader) uvarint() uint64 {
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.bad = true
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *payloadReader) varint() int64 {
	v, n := binary.Varint(p.b)
	if n <= 0 {
		p.bad = true
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *payloadReader) bytes() []byte {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.b)) {
		p.bad = true
		return nil
	}
	b := p.b[:n]
	p.b = p.b[n:]
	return b
}

// counter reads what appendCounter wrote.
func (p *payloadReader) counter() (kind byte, app string, next int64) {
	kind = p.byte()
	app = string(p.bytes())
	next = p.varint()
	return kind, app, next
}

// hasMagic reports whether r starts with the magic of format 2, without
// consuming anything.
func hasMagic(r *bufio.Reader) bool {
	b, _ := r.Peek(len(fileMagic))
	return bytes.Equal(b, []byte(fileMagic))
}
