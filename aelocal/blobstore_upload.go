package aelocal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Uploads and Send, on the app's front end.
//
// An upload is a POST of a multipart/form-data form to the upload URL.
// The front end stores every file of it as a blob, then sends the form on
// to the app's success path as production does: each file part replaced by
// a message/external-body part that names the blob key and carries the
// blob's headers as its body (what blobstore.ParseUpload reads), the other
// fields unchanged. The app's answer goes back to the browser. The request
// passes the front end's checks first (Host) and reaches the app with the
// signed-in user's headers, as any request through the front end.

const (
	// uploadFormMaxBytes bounds the form the front end holds while it
	// stores the files and then sends on to the app: the fields that are
	// not files and a part naming each file. App Engine's 32 MB limit of
	// a request to an app.
	uploadFormMaxBytes = 32 << 20
	// uploadFormsBudget bounds what the forms of uploads in flight hold
	// together (four of the largest).
	uploadFormsBudget = 4 * uploadFormMaxBytes
	// blobKeyHeader is the header of blobstore.Send.
	blobKeyHeader = "X-AppEngine-BlobKey"
	// blobRangeHeader is the range an app may ask to send, with Send.
	blobRangeHeader = "X-AppEngine-BlobRange"
	// autoContentType is what blobstore.Send sets when the app set no
	// Content-Type: use the blob's.
	autoContentType = "application/vnd.google.appengine.auto"
	// uploadTimeFormat is the layout of X-AppEngine-Upload-Creation.
	uploadTimeFormat = "2006-01-02 15:04:05.000000"
)

// serveUpload answers a POST to an upload URL and passes the rewritten
// form to forward, the front end's way to the app.
func (s *Server) serveUpload(forward http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			// Uploading changes state: a GET never does.
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "aelocal: an upload URL takes a POST of a multipart/form-data form", http.StatusMethodNotAllowed)
			return
		}
		// The form is held until the app has answered. Each upload
		// reserves the most it may hold, so uploads in flight together
		// hold at most uploadFormsBudget and one past it waits; the
		// reservation comes before the single-use URL is taken, so an
		// abandoned wait does not use it up.
		if err := s.blobstore.forms.acquire(r.Context(), uploadFormMaxBytes); err != nil {
			http.Error(w, "aelocal: upload abandoned while waiting for other uploads to finish", http.StatusServiceUnavailable)
			return
		}
		defer s.blobstore.forms.release(uploadFormMaxBytes)
		token := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, uploadPath), "/")
		sess := s.blobstore.takeSession(token, s.Now())
		if sess == nil {
			http.Error(w, "aelocal: this upload URL is unknown, expired or already used (each serves one upload); ask blobstore.UploadURL for another", http.StatusNotFound)
			return
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
			http.Error(w, "aelocal: an upload must be multipart/form-data (a form with enctype=\"multipart/form-data\")", http.StatusBadRequest)
			return
		}
		body, ctype, infos, code, err := s.storeUpload(sess, multipart.NewReader(r.Body, params["boundary"]))
		if err != nil {
			http.Error(w, "aelocal: upload refused: "+err.Error(), code)
			return
		}
		target, err := url.Parse(sess.successPath)
		if err != nil {
			s.dropBlobs(sess.app, infos)
			http.Error(w, "aelocal: bad success path", http.StatusInternalServerError)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = target.Path, target.RawPath, target.RawQuery
		r2.RequestURI = ""
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		r2.Header.Set("Content-Type", ctype)
		r2.Header.Set("Content-Length", strconv.Itoa(len(body)))
		r2.Header.Del("Transfer-Encoding")
		forward.ServeHTTP(w, r2)
	}
}

// storeUpload stores the files of an upload and returns the form to send
// to the app, its Content-Type, and the blobs stored. On error nothing is
// stored and code is the HTTP status to answer with.
func (s *Server) storeUpload(sess *uploadSession, mr *multipart.Reader) (body []byte, ctype string, infos []*blobInfoRecord, code int, err error) {
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	created := s.Now().UTC()
	total := int64(0)
	fail := func(c int, e error) ([]byte, string, []*blobInfoRecord, int, error) {
		s.dropBlobs("", infos)
		return nil, "", nil, c, e
	}
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(http.StatusBadRequest, fmt.Errorf("reading the form: %v", err))
		}
		_, dp, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if err != nil {
			return fail(http.StatusBadRequest, fmt.Errorf("a part without a valid Content-Disposition: %v", err))
		}
		name := dp["name"]
		filename, isFile := dp["filename"]
		if !isFile {
			// An ordinary field, passed on as it came.
			h := make(textproto.MIMEHeader)
			for k, v := range part.Header {
				h[k] = v
			}
			if h.Get("Content-Type") == "" {
				// Production's parts all have one (the SDK's
				// ParseUpload fails on a part without it).
				h.Set("Content-Type", "text/plain")
			}
			pw, _ := mw.CreatePart(h)
			room := int64(uploadFormMaxBytes - out.Len())
			if n, err := io.Copy(pw, io.LimitReader(part, room+1)); err != nil {
				return fail(http.StatusBadRequest, fmt.Errorf("reading field %q: %v", name, err))
			} else if n > room {
				return fail(http.StatusRequestEntityTooLarge, fmt.Errorf("the fields that are not files exceed %d bytes", uploadFormMaxBytes))
			}
			continue
		}
		if filename == "" {
			// A file input left empty: production sends no blob for it.
			io.Copy(io.Discard, part)
			continue
		}
		limit := int64(-1)
		if sess.maxPerBlob > 0 {
			limit = sess.maxPerBlob
		}
		if sess.maxTotal > 0 && (limit < 0 || sess.maxTotal-total < limit) {
			limit = sess.maxTotal - total
		}
		key := randomToken()
		size, sum, err := s.blobstore.bytes.create(key, part, limit)
		switch {
		case errors.Is(err, errBlobTooLarge):
			return fail(http.StatusRequestEntityTooLarge, fmt.Errorf("file %q is larger than the upload URL allows (max_upload_size_per_blob_bytes %d, max_upload_size_bytes %d)", filename, sess.maxPerBlob, sess.maxTotal))
		case errors.Is(err, errBlobSpace):
			return fail(http.StatusRequestEntityTooLarge, fmt.Errorf("file %q does not fit in the blobstore's memory (%d MiB for all blobs without -datastore_path; with it, blobs are files)", filename, blobMemoryLimit>>20))
		case err != nil:
			return fail(http.StatusBadRequest, fmt.Errorf("reading file %q: %v", filename, err))
		}
		total += size
		bi := &blobInfoRecord{
			key:         key,
			contentType: part.Header.Get("Content-Type"),
			creation:    created,
			filename:    filename,
			size:        size,
			md5:         sum,
		}
		if bi.contentType == "" {
			bi.contentType = "application/octet-stream"
		}
		if sess.bucket != "" {
			bi.gsObject = "/gs/" + strings.TrimSuffix(sess.bucket, "/") + "/" + key
		}
		infos = append(infos, bi)
		writeBlobPart(mw, name, bi)
		// A file's part names it, twice: many files, or long names,
		// would grow the form without bound while the files stay small.
		if out.Len() > uploadFormMaxBytes {
			return fail(http.StatusRequestEntityTooLarge, fmt.Errorf("the form sent on to the app, with a part for each file, exceeds %d bytes", uploadFormMaxBytes))
		}
	}
	if err := s.putBlobInfos(sess.app, infos); err != nil {
		// A put the datastore file refused changed nothing; one whose
		// sync failed is in memory (its outcome unknown, as the
		// datastore's own writes): its blobs keep their bytes, so that
		// no info names a blob without them.
		infos = slices.DeleteFunc(infos, func(bi *blobInfoRecord) bool { return s.blobInfo(sess.app, bi.key) != nil })
		return fail(http.StatusInternalServerError, err)
	}
	mw.Close()
	return out.Bytes(), mw.FormDataContentType(), infos, 0, nil
}

// writeBlobPart writes the part the app gets for a stored file: its body
// is the blob's MIME header, as production sends it.
func writeBlobPart(mw *multipart.Writer, field string, bi *blobInfoRecord) {
	disp := mime.FormatMediaType("form-data", map[string]string{"name": field, "filename": bi.filename})
	h := make(textproto.MIMEHeader)
	h.Set("Content-Type", mime.FormatMediaType("message/external-body", map[string]string{"blob-key": bi.key, "access-type": blobKeyHeader}))
	h.Set("Content-Disposition", disp)
	pw, _ := mw.CreatePart(h)
	fmt.Fprintf(pw, "Content-Type: %s\r\n", bi.contentType)
	fmt.Fprintf(pw, "Content-Length: %d\r\n", bi.size)
	// Production's Content-MD5 here is the hex digest in URL-safe base64.
	fmt.Fprintf(pw, "Content-MD5: %s\r\n", base64.URLEncoding.EncodeToString([]byte(bi.md5)))
	fmt.Fprintf(pw, "X-AppEngine-Upload-Creation: %s\r\n", bi.creation.Format(uploadTimeFormat))
	if bi.gsObject != "" {
		fmt.Fprintf(pw, "X-AppEngine-Cloud-Storage-Object: %s\r\n", bi.gsObject)
	}
	fmt.Fprintf(pw, "Content-Disposition: %s\r\n\r\n", disp)
}

// dropBlobs removes blobs of an upload that failed. app "" means their
// infos were never stored.
func (s *Server) dropBlobs(app string, infos []*blobInfoRecord) {
	for _, bi := range infos {
		if app != "" {
			if err := s.deleteBlobInfo(app, bi.key); err != nil {
				log.Printf("aelocal: removing the blob info of a failed upload: %v", err)
			}
		}
		s.blobstore.bytes.remove(bi.key)
	}
}

// serveUploadWithoutFront answers an upload URL on the API server, which
// has no app to pass the form to.
func serveUploadWithoutFront(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "aelocal: uploads go through the app's front end, which passes them on to the app: start the server with -front_addr and -app_url (Options.FrontAddr, Options.AppURL), and blobstore.UploadURL gives URLs there", http.StatusServiceUnavailable)
}

// sendBlob is the front end's part of blobstore.Send: a response of the
// app with X-AppEngine-BlobKey leaves with the blob as its body
// (blobAnswer).
func (s *Server) sendBlob(resp *http.Response) error {
	if resp.Header.Get(blobKeyHeader) == "" {
		return nil
	}
	rng := ""
	if resp.Request != nil {
		rng = resp.Request.Header.Get("Range")
	}
	resp.Body.Close()
	code, body, n := s.blobAnswer(resp.Header, rng, resp.StatusCode)
	resp.StatusCode, resp.Status = code, fmt.Sprintf("%d %s", code, http.StatusText(code))
	resp.Body, resp.ContentLength, resp.TransferEncoding = body, n, nil
	return nil
}

// blobAnswer turns the header h of a response that names a blob
// (X-AppEngine-BlobKey) into the answer App Engine sends: the blob as the
// body, the blob's Content-Type unless the app chose one, and the range
// the app (X-AppEngine-BlobRange) or the browser (Range, reqRange) asked
// for. It returns the status and the body, of n bytes.
func (s *Server) blobAnswer(h http.Header, reqRange string, status int) (code int, body io.ReadCloser, n int64) {
	key := h.Get(blobKeyHeader)
	h.Del(blobKeyHeader)
	rng := h.Get(blobRangeHeader)
	h.Del(blobRangeHeader)
	if rng == "" {
		rng = reqRange
	}
	h.Del("Content-Encoding")
	h.Del("Transfer-Encoding")
	empty := func(code int) (int, io.ReadCloser, int64) {
		h.Del("Content-Type")
		h.Set("Content-Length", "0")
		return code, http.NoBody, 0
	}
	bi := s.blobInfo(blobApp(), key)
	if bi == nil {
		return empty(http.StatusNotFound)
	}
	r, size, err := s.blobstore.bytes.open(key)
	if err != nil {
		return empty(http.StatusInternalServerError)
	}
	start, n := int64(0), size
	if rng != "" {
		var ok bool
		if start, n, ok = parseByteRange(rng, size); !ok {
			r.Close()
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			return empty(http.StatusRequestedRangeNotSatisfiable)
		}
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+n-1, size))
	}
	if ct := h.Get("Content-Type"); ct == "" || ct == autoContentType {
		h.Set("Content-Type", bi.contentType)
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	return status, struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(r, start, n), r}, n
}

// serveWithBlobs serves r with h, an app behind Middleware, and answers
// as the front end does when the app sends a blob (blobstore.Send), so
// that apps tested with Middleware alone serve their blobs too.
// appengine.Middleware holds the whole response and writes it at the end,
// so the answer is known when its header is written.
func (s *Server) serveWithBlobs(h http.Handler, w http.ResponseWriter, r *http.Request) {
	bw := &blobSendWriter{ResponseWriter: w, s: s, r: r}
	h.ServeHTTP(bw, r)
	if !bw.decided && w.Header().Get(blobKeyHeader) != "" {
		bw.WriteHeader(http.StatusOK)
	}
}

// blobSendWriter replaces a response that names a blob with the blob.
type blobSendWriter struct {
	http.ResponseWriter
	s       *Server
	r       *http.Request
	decided bool // the header was written
	blob    bool // and the body is the blob's
}

func (w *blobSendWriter) WriteHeader(code int) {
	if w.decided {
		if !w.blob {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	w.decided = true
	if w.Header().Get(blobKeyHeader) == "" {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.blob = true
	code, body, _ := w.s.blobAnswer(w.Header(), w.r.Header.Get("Range"), code)
	defer body.Close()
	w.ResponseWriter.WriteHeader(code)
	if w.r.Method != http.MethodHead {
		io.Copy(w.ResponseWriter, body)
	}
}

func (w *blobSendWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.blob {
		return len(b), nil // the app's own body gives way to the blob
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *blobSendWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// parseByteRange reads one range "bytes=a-b", "bytes=a-" or "bytes=-n" of
// a blob of size bytes and returns its start and length.
func parseByteRange(h string, size int64) (start, n int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		last, err := strconv.ParseInt(b, 10, 64)
		if err != nil || last <= 0 || size == 0 {
			return 0, 0, false
		}
		last = min(last, size)
		return size - last, last, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || first >= size {
		return 0, 0, false
	}
	end := size - 1
	if b != "" {
		e, err := strconv.ParseInt(b, 10, 64)
		if err != nil || e < first {
			return 0, 0, false
		}
		end = min(e, size-1)
	}
	return first, end - first + 1, true
}
