package aelocal

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// The blobstore service, as production answers google.golang.org/appengine/v2/blobstore:
//
//   - CreateUploadURL gives a single-use URL /_ah/upload/TOKEN on the app's
//     front end (Options.FrontAddr), where a browser posts a multipart
//     form; the front end stores each file as a blob and passes the form
//     on to the app's success path with the files replaced by their blob
//     infos, as production does, so blobstore.ParseUpload works there
//     (blobstore_upload.go);
//   - a response of the app with the X-AppEngine-BlobKey header
//     (blobstore.Send) leaves the front end with the blob as its body;
//   - FetchData (blobstore.NewReader) and DeleteBlob;
//   - the blob infos are entities of kind __BlobInfo__, named by the blob
//     key, in the empty namespace, as in production, so blobstore.Stat and
//     datastore queries on __BlobInfo__ read them, and they persist with
//     the datastore file.
//
// The blobs' bytes live beside the datastore file, in the directory
// DatastorePath + ".blobs", one file per blob; without a datastore file
// they live in memory, at most blobMemoryLimit bytes for all blobs
// together (an upload past it fails with 413 and stores nothing).

const (
	blobInfoKind = "__BlobInfo__"
	// maxBlobFetchSize is production's MAX_BLOB_FETCH_SIZE: the most one
	// FetchData call returns.
	maxBlobFetchSize = 1015808
	// blobMemoryLimit bounds the bytes of all blobs kept in memory.
	blobMemoryLimit = 256 << 20
	// maxUploadSessions bounds the upload URLs given out and not yet used;
	// past it the oldest stops working.
	maxUploadSessions = 10000
	// uploadSessionTTL is how long an upload URL works. Production does
	// not document a lifetime; the request's url_expiry_time_seconds can
	// shorten it.
	uploadSessionTTL = 24 * time.Hour
	// gsKeyPrefix starts the blob key of a Cloud Storage file, as the SDK
	// stub encodes it.
	gsKeyPrefix = "encoded_gs_file:"
	uploadPath  = "/_ah/upload/"
)

// Blobstore error codes (appengine.v2.BlobstoreServiceError.ErrorCode).
const (
	blobInternalError       = 1
	blobURLTooLong          = 2
	blobNotFound            = 4
	blobDataIndexOutOfRange = 5
	blobFetchSizeTooLarge   = 6
	blobArgumentOutOfRange  = 8
	blobInvalidBlobKey      = 9
)

// Bounds of the blobstore's requests.
const (
	// maxSuccessPathBytes: a longer success path is URL_TOO_LONG.
	maxSuccessPathBytes = 2048
	// maxBlobKeyBytes: longer blob keys are none aelocal made.
	maxBlobKeyBytes = 500
	// blobUploadURLExpiryMaxSecs bounds url_expiry_time_seconds.
	blobUploadURLExpiryMaxSecs = 24 * 60 * 60
)

// blobstoreService holds the upload sessions and the blobs' bytes; the
// blob infos are in the datastore.
type blobstoreService struct {
	mu       sync.Mutex
	sessions map[string]*uploadSession
	order    []string // tokens, oldest first
	bytes    *blobBytes
	forms    *byteBudget // what the forms being passed on to the app may hold (uploadFormsBudget)
}

// uploadSession is what an upload URL promised: where the form goes, and
// the limits of its files.
type uploadSession struct {
	app         string
	successPath string
	maxTotal    int64 // 0: no limit
	maxPerBlob  int64 // 0: no limit
	bucket      string
	expires     time.Time
}

func newBlobstoreService() *blobstoreService {
	return &blobstoreService{sessions: make(map[string]*uploadSession), bytes: newBlobBytes(""), forms: newByteBudget(uploadFormsBudget)}
}

func init() {
	const p = "appengine.v2."
	const void = "appengine.base.v2.VoidProto"
	register("blobstore", "CreateUploadURL", p+"CreateUploadURLRequest", p+"CreateUploadURLResponse", blobCreateUploadURL)
	register("blobstore", "DeleteBlob", p+"DeleteBlobRequest", void, blobDeleteBlob)
	register("blobstore", "FetchData", p+"FetchDataRequest", p+"FetchDataResponse", blobFetchData)
	register("blobstore", "CreateEncodedGoogleStorageKey", p+"CreateEncodedGoogleStorageKeyRequest", p+"CreateEncodedGoogleStorageKeyResponse", blobCreateGSKey)
	serviceFailureCodes["blobstore"] = blobInternalError
}

// blobApp is the app whose blobs an API call means: the server's
// GAE_APPLICATION, which the app shares with it (the blobstore protocol
// names no app).
func blobApp() string {
	if a := os.Getenv("GAE_APPLICATION"); a != "" {
		return a
	}
	return DefaultAppID
}

// randomToken returns 32 random bytes in URL-safe base64.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func blobCreateUploadURL(s *Server, in, out pmsg) error {
	path := in.Str("success_path")
	if len(path) > maxSuccessPathBytes {
		return errorf(blobURLTooLong, "the success path is %d bytes long; the limit is %d", len(path), maxSuccessPathBytes)
	}
	if !strings.HasPrefix(path, "/") {
		// Production takes a path of the app; a full URL would send the
		// upload's blob infos to another site.
		return errorf(blobArgumentOutOfRange, "the success path %q is not a path of the app (it must start with /)", path)
	}
	sess := &uploadSession{
		app:         blobApp(),
		successPath: path,
		maxTotal:    in.Int("max_upload_size_bytes"),
		maxPerBlob:  in.Int("max_upload_size_per_blob_bytes"),
		bucket:      in.Str("gs_bucket_name"),
		expires:     s.Now().Add(uploadSessionTTL),
	}
	if sess.maxTotal < 0 || sess.maxPerBlob < 0 {
		return errorf(blobArgumentOutOfRange, "upload size limits must not be negative")
	}
	if sess.maxTotal > 0 && sess.maxPerBlob > sess.maxTotal {
		// As the SDK checks before it calls.
		return errorf(blobArgumentOutOfRange, "the limit per blob (%d) exceeds the limit of the upload (%d)", sess.maxPerBlob, sess.maxTotal)
	}
	if in.Has("url_expiry_time_seconds") {
		secs := in.Int("url_expiry_time_seconds")
		if secs <= 0 || secs > blobUploadURLExpiryMaxSecs {
			return errorf(blobArgumentOutOfRange, "url_expiry_time_seconds %d is out of range (1 to %d)", secs, blobUploadURLExpiryMaxSecs)
		}
		sess.expires = s.Now().Add(time.Duration(secs) * time.Second)
	}
	token := randomToken()
	b := s.blobstore
	b.mu.Lock()
	b.sessions[token] = sess
	b.order = append(b.order, token)
	for len(b.order) > maxUploadSessions {
		delete(b.sessions, b.order[0])
		b.order = b.order[1:]
	}
	b.mu.Unlock()
	base := s.FrontURL()
	if base == "" {
		// No front end: the URL is the API server's, which explains
		// there that uploads need the front end.
		base = s.URL()
	}
	out.Set("url", base+uploadPath+token)
	return nil
}

// takeSession returns the session of token and forgets it: an upload URL
// serves one upload.
func (b *blobstoreService) takeSession(token string, now time.Time) *uploadSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	sess := b.sessions[token]
	if sess == nil {
		return nil
	}
	delete(b.sessions, token)
	for i, t := range b.order {
		if t == token {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
	if now.After(sess.expires) {
		return nil
	}
	return sess
}

func blobDeleteBlob(s *Server, in, out pmsg) error {
	app := blobApp()
	keys := in.BytesList("blob_key")
	for _, k := range keys {
		if len(k) == 0 || len(k) > maxBlobKeyBytes {
			return errorf(blobInvalidBlobKey, "invalid blob key")
		}
	}
	for _, k := range keys {
		// The info goes first: a blob without info is garbage nobody
		// can reach; an info without its bytes would answer Stat yet
		// fail to read.
		if err := s.deleteBlobInfo(app, string(k)); err != nil {
			return err
		}
		if err := s.blobstore.bytes.remove(string(k)); err != nil {
			return errorf(blobInternalError, "aelocal: deleting the blob's bytes: %v", err)
		}
	}
	return nil
}

func blobFetchData(s *Server, in, out pmsg) error {
	key := in.Str("blob_key")
	start, end := in.Int("start_index"), in.Int("end_index")
	if start < 0 || end < start {
		return errorf(blobDataIndexOutOfRange, "start index %d and end index %d are out of range", start, end)
	}
	if end-start+1 > maxBlobFetchSize {
		return errorf(blobFetchSizeTooLarge, "a fetch of %d bytes is larger than the %d bytes allowed", end-start+1, maxBlobFetchSize)
	}
	if len(key) == 0 || len(key) > maxBlobKeyBytes {
		return errorf(blobNotFound, "")
	}
	info := s.blobInfo(blobApp(), key)
	if info == nil {
		return errorf(blobNotFound, "")
	}
	r, size, err := s.blobstore.bytes.open(key)
	if err != nil {
		return errorf(blobInternalError, "aelocal: the bytes of the blob are missing: %v", err)
	}
	defer r.Close()
	if start >= size {
		out.Set("data", []byte{})
		return nil
	}
	buf := make([]byte, min(end+1, size)-start)
	if _, err := r.ReadAt(buf, start); err != nil {
		return errorf(blobInternalError, "aelocal: reading the blob: %v", err)
	}
	out.Set("data", buf)
	return nil
}

func blobCreateGSKey(s *Server, in, out pmsg) error {
	name := in.Str("filename")
	const gsPrefix = "/gs/"
	if !strings.HasPrefix(name, gsPrefix) || len(name) == len(gsPrefix) {
		return errorf(blobArgumentOutOfRange, "%q is not a Cloud Storage file name of the form /gs/bucket/object", name)
	}
	out.Set("blob_key", gsKeyPrefix+base64.URLEncoding.EncodeToString([]byte(name[len(gsPrefix):])))
	return nil
}

// blobInfoRecord is what the datastore keeps of a blob.
type blobInfoRecord struct {
	key         string
	contentType string
	creation    time.Time
	filename    string
	size        int64
	md5         string // hex, as production's md5_hash
	gsObject    string // "/gs/bucket/object" for an upload to a bucket
}

// blobInfo reads the __BlobInfo__ entity of key, or returns nil.
func (s *Server) blobInfo(app, key string) *blobInfoRecord {
	d := s.datastore
	path := dsPath{{kind: blobInfoKind, name: key}}
	d.mu.Lock()
	e := d.lookupLocked(nsKey{app: app}, path)
	d.mu.Unlock()
	if e == nil {
		return nil
	}
	return blobInfoOf(e)
}

// blobInfoOf reads a __BlobInfo__ entity.
func blobInfoOf(e *dsEntity) *blobInfoRecord {
	bi := &blobInfoRecord{key: e.path[len(e.path)-1].name}
	ep := e.msg()
	for _, field := range []string{"property", "raw_property"} {
		for _, p := range ep.Msgs(field) {
			v := p.Msg("value")
			switch p.Str("name") {
			case "content_type":
				bi.contentType = v.Str("stringValue")
			case "filename":
				bi.filename = v.Str("stringValue")
			case "md5_hash":
				bi.md5 = v.Str("stringValue")
			case "gs_object_name":
				bi.gsObject = v.Str("stringValue")
			case "size":
				bi.size = v.Int("int64Value")
			case "creation":
				bi.creation = time.UnixMicro(v.Int("int64Value")).UTC()
			}
		}
	}
	return bi
}

// blobInfos returns the blob infos of app, newest first.
func (s *Server) blobInfos(app string) []*blobInfoRecord {
	d := s.datastore
	d.mu.Lock()
	var out []*blobInfoRecord
	if sp := d.spaces[nsKey{app: app}]; sp != nil {
		for e := range sp.kindEntities(blobInfoKind) {
			out = append(out, blobInfoOf(e))
		}
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b *blobInfoRecord) int {
		if c := b.creation.Compare(a.creation); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

// putBlobInfos stores the __BlobInfo__ entities of an upload in one write.
func (s *Server) putBlobInfos(app string, infos []*blobInfoRecord) (err error) {
	ws := make([]dsWrite, 0, len(infos))
	for _, bi := range infos {
		sp, path := nsKey{app: app}, dsPath{{kind: blobInfoKind, name: bi.key}}
		ep, _ := newMsg("appengine.v2.EntityProto")
		writeRef(ep.Mutable("key"), app, "", path)
		eg := ep.Mutable("entity_group").AppendMsg("element")
		eg.Set("type", blobInfoKind)
		eg.Set("name", bi.key)
		addStr := func(name, v string) {
			field := "property"
			if len(v) > maxIndexedStringBytes {
				field = "raw_property"
			}
			p := ep.AppendMsg(field)
			p.Set("name", name)
			p.Set("multiple", false)
			p.Mutable("value").Set("stringValue", v)
		}
		addStr("content_type", bi.contentType)
		p := ep.AppendMsg("property")
		p.Set("name", "creation")
		p.Set("meaning", meaningGDWhen)
		p.Set("multiple", false)
		p.Mutable("value").Set("int64Value", bi.creation.UnixMicro())
		addStr("filename", bi.filename)
		addStr("md5_hash", bi.md5)
		p = ep.AppendMsg("property")
		p.Set("name", "size")
		p.Set("multiple", false)
		p.Mutable("value").Set("int64Value", bi.size)
		if bi.gsObject != "" {
			addStr("gs_object_name", bi.gsObject)
		}
		e, err := newEntity(sp, path, ep)
		if err != nil {
			return err
		}
		ws = append(ws, dsWrite{sp, path, e})
	}
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	d.applyLocked(ws)
	return nil
}

// deleteBlobInfo removes the __BlobInfo__ entity of key, if there is one.
func (s *Server) deleteBlobInfo(app, key string) (err error) {
	sp, path := nsKey{app: app}, dsPath{{kind: blobInfoKind, name: key}}
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	if d.lookupLocked(sp, path) == nil {
		return nil
	}
	d.applyLocked([]dsWrite{{sp, path, nil}})
	return nil
}

// configureBlobstore keeps the blobs' bytes beside the datastore file, if
// there is one, in a directory made with the first blob.
func (s *Server) configureBlobstore(o *Options) error {
	if o.DatastorePath != "" {
		s.blobstore.bytes = newBlobBytes(o.DatastorePath + ".blobs")
	}
	return nil
}
