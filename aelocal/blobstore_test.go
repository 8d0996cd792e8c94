package aelocal

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/blobstore"
	"google.golang.org/appengine/v2/datastore"
)

// blobTestApp is an app with a success path that reports what
// blobstore.ParseUpload found, and a path that sends a blob. Neither
// makes an API call, so it needs no server of its own.
func blobTestApp() *httptest.Server { return httptest.NewServer(blobTestMux()) }

// blobTestMux is blobTestApp's handler.
func blobTestMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/uploaded", func(w http.ResponseWriter, r *http.Request) {
		blobs, other, err := blobstore.ParseUpload(r)
		if err != nil {
			http.Error(w, "ParseUpload: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "method=%s query=%s note=%q\n", r.Method, r.URL.RawQuery, other.Get("note"))
		for field, bis := range blobs {
			for _, bi := range bis {
				fmt.Fprintf(w, "%s %s %s %q %d %s %s %s\n", field, bi.BlobKey, bi.ContentType, bi.Filename, bi.Size, bi.MD5, bi.CreationTime.Format("2006"), bi.ObjectName)
			}
		}
	})
	mux.HandleFunc("/serve", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.URL.Query().Get("ct"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		if rng := r.URL.Query().Get("range"); rng != "" {
			w.Header().Set("X-AppEngine-BlobRange", rng)
		}
		blobstore.Send(w, appengine.BlobKey(r.URL.Query().Get("key")))
	})
	return mux
}

// blobServer starts blobTestApp behind a server with a front end.
func blobServer(t *testing.T, o *Options) (*Server, context.Context) {
	t.Helper()
	app := blobTestApp()
	t.Cleanup(app.Close)
	if o == nil {
		o = &Options{}
	}
	o.AppURL, o.FrontAddr = app.URL, "127.0.0.1:0"
	s, err := NewServerOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, middlewareContext(t, s)
}

// postFiles posts a form with the field note and files (field, name,
// content) to url, as a browser does.
func postFiles(t *testing.T, url string, files ...[3]string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("note", "hello, blobs")
	for _, f := range files {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name=%q; filename=%q`, f[0], f[1])}
		h["Content-Type"] = []string{"text/plain"}
		pw, _ := mw.CreatePart(h)
		pw.Write([]byte(f[2]))
	}
	mw.Close()
	resp, err := http.Post(url, mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func TestBlobstoreUploadSendReadDelete(t *testing.T) {
	s, ctx := blobServer(t, nil)
	u, err := blobstore.UploadURL(ctx, "/uploaded?from=form", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.String(), s.FrontURL()+"/_ah/upload/") {
		t.Fatalf("UploadURL = %s, want one on the front end %s", u, s.FrontURL())
	}
	// A GET changes nothing: the URL still serves its upload afterwards.
	if resp, err := http.Get(u.String()); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET upload URL: %v %v", resp.StatusCode, err)
	}
	content := "the quick brown fox"
	code, got := postFiles(t, u.String(), [3]string{"file", "fox.txt", content}, [3]string{"empty", "", ""})
	if code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, got)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if lines[0] != `method=POST query=from=form note="hello, blobs"` || len(lines) != 2 {
		t.Fatalf("the success path got\n%s", got)
	}
	f := strings.Fields(lines[1])
	key := appengine.BlobKey(f[1])
	year := fmt.Sprint(s.Now().UTC().Year())
	if want := []string{"file", string(key), "text/plain", `"fox.txt"`, fmt.Sprint(len(content)), md5hex(content), year}; strings.Join(f, " ") != strings.Join(want, " ") {
		t.Fatalf("ParseUpload gave %q, want %q", f, want)
	}
	// Used once.
	if code, _ := postFiles(t, u.String(), [3]string{"file", "again.txt", "x"}); code != http.StatusNotFound {
		t.Fatalf("a second upload to the URL: %d", code)
	}

	// Stat reads the __BlobInfo__ entity, as in production.
	bi, err := blobstore.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if bi.Filename != "fox.txt" || bi.Size != int64(len(content)) || bi.ContentType != "text/plain" || bi.MD5 != md5hex(content) || bi.CreationTime.IsZero() {
		t.Fatalf("Stat = %+v", bi)
	}
	n, err := datastore.NewQuery("__BlobInfo__").Count(ctx)
	if err != nil || n != 1 {
		t.Fatalf("__BlobInfo__ query: %d, %v", n, err)
	}
	// The console lists it.
	_, page := getPage(t, s, "/blobstore")
	mustContain(t, page, "Blobs 1–1 of 1.", "<td data-label=\"File name\">fox.txt</td>", "<code>"+string(key)+"</code>", "19 B")

	// BlobReader reads it, seeks and reads at offsets.
	r := blobstore.NewReader(ctx, key)
	all, err := io.ReadAll(r)
	if err != nil || string(all) != content {
		t.Fatalf("NewReader: %q, %v", all, err)
	}
	buf := make([]byte, 5)
	if _, err := r.ReadAt(buf, 4); err != nil || string(buf) != "quick" {
		t.Fatalf("ReadAt: %q, %v", buf, err)
	}

	// Send through the front end: the blob is the body.
	get := func(query string, h http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.FrontURL()+"/serve?key="+string(key)+query, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("", nil)
	if resp.StatusCode != 200 || body != content || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-AppEngine-BlobKey") != "" {
		t.Fatalf("Send: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = get("&ct=application/x-fox", http.Header{"Range": {"bytes=4-8"}})
	if resp.StatusCode != 206 || body != "quick" || resp.Header.Get("Content-Type") != "application/x-fox" || resp.Header.Get("Content-Range") != "bytes 4-8/19" {
		t.Fatalf("Send with Range: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = get("&range=bytes=-3", nil)
	if resp.StatusCode != 206 || body != "fox" {
		t.Fatalf("Send with X-AppEngine-BlobRange: %d %q", resp.StatusCode, body)
	}
	if resp, _ = get("", http.Header{"Range": {"bytes=100-"}}); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("Send past the end: %d", resp.StatusCode)
	}

	// An app behind Middleware alone sends blobs too.
	inproc := httptest.NewServer(s.Middleware(blobTestMux()))
	defer inproc.Close()
	req, _ := http.NewRequest("GET", inproc.URL+"/serve?key="+string(key), nil)
	req.Header.Set("Range", "bytes=4-")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 206 || string(b) != content[4:] || resp.Header.Get("X-AppEngine-BlobKey") != "" {
		t.Fatalf("Send behind Middleware: %d %q %v", resp.StatusCode, b, resp.Header)
	}

	// Delete: gone everywhere.
	if err := blobstore.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.Stat(ctx, key); err != datastore.ErrNoSuchEntity {
		t.Fatalf("Stat after Delete: %v", err)
	}
	if _, err := io.ReadAll(blobstore.NewReader(ctx, key)); !isAPIError(err, "blobstore", 4) {
		t.Fatalf("reading a deleted blob: %v", err)
	}
	if resp, _ = get("", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("Send of a deleted blob: %d", resp.StatusCode)
	}
	// Deleting what is not there is no error, as in production.
	if err := blobstore.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

func isAPIError(err error, service string, code int32) bool {
	// The client's APIError is internal; its text names service and code,
	// as "API error 6 (images: INVALID_BLOB_KEY)", or "blobstore API error
	// 4" for a service that registers no names.
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, fmt.Sprintf("API error %d (%s: ", code, service)) ||
		strings.HasPrefix(msg, fmt.Sprintf("%s API error %d", service, code))
}

func TestBlobstoreUploadLimits(t *testing.T) {
	s, ctx := blobServer(t, nil)
	for _, c := range []struct {
		opts  blobstore.UploadURLOptions
		files [][3]string
		code  int
	}{
		{blobstore.UploadURLOptions{MaxUploadBytesPerBlob: 4}, [][3]string{{"f", "a", "12345"}}, 413},
		{blobstore.UploadURLOptions{MaxUploadBytesPerBlob: 5}, [][3]string{{"f", "a", "12345"}}, 200},
		{blobstore.UploadURLOptions{MaxUploadBytes: 8}, [][3]string{{"f", "a", "12345"}, {"f", "b", "6789"}}, 413},
		{blobstore.UploadURLOptions{MaxUploadBytes: 9}, [][3]string{{"f", "a", "12345"}, {"f", "b", "6789"}}, 200},
	} {
		u, err := blobstore.UploadURL(ctx, "/uploaded", &c.opts)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := datastore.NewQuery("__BlobInfo__").Count(ctx)
		code, body := postFiles(t, u.String(), c.files...)
		after, _ := datastore.NewQuery("__BlobInfo__").Count(ctx)
		if code != c.code {
			t.Errorf("%+v: %d %s, want %d", c.opts, code, body, c.code)
		}
		if stored := after - before; (code == 200) != (stored == len(c.files)) || (code != 200 && stored != 0) {
			t.Errorf("%+v: %d blobs stored after %d", c.opts, stored, code)
		}
	}
	s.blobstore.bytes.mu.Lock()
	held := s.blobstore.bytes.held
	s.blobstore.bytes.mu.Unlock()
	if held != 5+9 {
		t.Errorf("the blobstore holds %d bytes, want 14 (refused uploads release theirs)", held)
	}
	// The server-wide cap of blobs in memory.
	s.blobstore.bytes.mu.Lock()
	s.blobstore.bytes.memLimit = 20
	s.blobstore.bytes.mu.Unlock()
	u, _ := blobstore.UploadURL(ctx, "/uploaded", nil)
	if code, body := postFiles(t, u.String(), [3]string{"f", "big", "0123456789"}); code != 413 || !strings.Contains(body, "memory") {
		t.Errorf("past the memory cap: %d %s", code, body)
	}
	// Bad requests for an upload URL, and bad forms.
	for _, path := range []string{"http://evil.example/x", "relative"} {
		if _, err := blobstore.UploadURL(ctx, path, nil); !isAPIError(err, "blobstore", 8) {
			t.Errorf("UploadURL(%q): %v", path, err)
		}
	}
	for _, o := range []blobstore.UploadURLOptions{{MaxUploadBytes: 5, MaxUploadBytesPerBlob: 6}, {MaxUploadBytes: -1}, {MaxUploadBytesPerBlob: -1}} {
		if _, err := blobstore.UploadURL(ctx, "/uploaded", &o); !isAPIError(err, "blobstore", 8) {
			t.Errorf("UploadURL with %+v: %v", o, err)
		}
	}
	if _, err := blobstore.UploadURL(ctx, "/"+strings.Repeat("x", 3000), nil); !isAPIError(err, "blobstore", 2) {
		t.Errorf("a long success path: %v", err)
	}
	// An upload URL expires (after a day here).
	u, _ = blobstore.UploadURL(ctx, "/uploaded", nil)
	s.FastForward(uploadSessionTTL + time.Second)
	if code, _ := postFiles(t, u.String(), [3]string{"f", "late", "x"}); code != http.StatusNotFound {
		t.Errorf("an expired upload URL: %d", code)
	}
	u, _ = blobstore.UploadURL(ctx, "/uploaded", nil)
	if resp, err := http.Post(u.String(), "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != 400 {
		t.Errorf("a body that is not a form: %v %v", resp.StatusCode, err)
	}
}

// TestBlobstoreFetchDataAnswers shows production's answers to FetchData
// (the SDK stub's, whose codes production documents in
// BlobstoreServiceError) next to aelocal's.
func TestBlobstoreFetchDataAnswers(t *testing.T) {
	s, ctx := blobServer(t, nil)
	u, _ := blobstore.UploadURL(ctx, "/uploaded", nil)
	_, got := postFiles(t, u.String(), [3]string{"f", "a", "0123456789"})
	key := strings.Fields(strings.Split(got, "\n")[1])[1]
	for _, c := range []struct {
		key        string
		start, end int64
		data       string
		code       int32 // production's BlobstoreServiceError, 0 for none
	}{
		{key, 0, 3, "0123", 0},
		{key, 8, 20, "89", 0},             // cut at the end
		{key, 10, 20, "", 0},              // past the end: empty
		{key, -1, 3, "", 5},               // DATA_INDEX_OUT_OF_RANGE
		{key, 5, 4, "", 5},                // DATA_INDEX_OUT_OF_RANGE
		{key, 0, maxBlobFetchSize, "", 6}, // BLOB_FETCH_SIZE_TOO_LARGE: 1,015,809 bytes
		{key, 0, maxBlobFetchSize - 1, "0123456789", 0},
		{"no-such-blob", 0, 3, "", 4}, // BLOB_NOT_FOUND
	} {
		in, _ := newMsg("appengine.v2.FetchDataRequest")
		in.Set("blob_key", c.key)
		in.Set("start_index", c.start)
		in.Set("end_index", c.end)
		out, _ := newMsg("appengine.v2.FetchDataResponse")
		err := s.Call(ctx, "blobstore", "FetchData", protoV1(in), protoV1(out))
		if c.code != 0 {
			if !isAPIError(err, "blobstore", c.code) {
				t.Errorf("FetchData(%d, %d): %v, want code %d", c.start, c.end, err, c.code)
			}
			continue
		}
		if err != nil || out.Str("data") != c.data {
			t.Errorf("FetchData(%d, %d) = %q, %v; want %q", c.start, c.end, out.Str("data"), err, c.data)
		}
	}
	// A Cloud Storage file's key, as the SDK encodes it.
	k, err := blobstore.BlobKeyForFile(ctx, "/gs/bucket/object.txt")
	if err != nil || k != "encoded_gs_file:YnVja2V0L29iamVjdC50eHQ=" {
		t.Errorf("BlobKeyForFile = %q, %v", k, err)
	}
	if _, err := blobstore.BlobKeyForFile(ctx, "bucket/object.txt"); !isAPIError(err, "blobstore", 8) {
		t.Errorf("BlobKeyForFile without /gs/: %v", err)
	}
}

func TestBlobstorePersistsWithDatastoreFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds")
	s, ctx := blobServer(t, &Options{DatastorePath: path})
	u, _ := blobstore.UploadURL(ctx, "/uploaded", &blobstore.UploadURLOptions{StorageBucket: "bucket/dir"})
	_, got := postFiles(t, u.String(), [3]string{"f", "kept.txt", "kept across restarts"})
	f := strings.Fields(strings.Split(got, "\n")[1])
	key := appengine.BlobKey(f[1])
	if len(f) < 8 || f[7] != "/gs/bucket/dir/"+string(key) {
		t.Errorf("the object name of an upload to a bucket: %q", f)
	}
	s.Close()

	s2, ctx2 := blobServer(t, &Options{DatastorePath: path})
	_ = s2
	bi, err := blobstore.Stat(ctx2, key)
	if err != nil || bi.Filename != "kept.txt" {
		t.Fatalf("Stat after restart: %+v, %v", bi, err)
	}
	if b, err := io.ReadAll(blobstore.NewReader(ctx2, key)); err != nil || string(b) != "kept across restarts" {
		t.Fatalf("read after restart: %q, %v", b, err)
	}
	if err := blobstore.Delete(ctx2, key); err != nil {
		t.Fatal(err)
	}
	if ents, _ := filepath.Glob(path + ".blobs/blob-*"); len(ents) != 0 {
		t.Fatalf("files left after Delete: %v", ents)
	}
}

func TestBlobstoreUploadWithoutFrontEnd(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	u, err := blobstore.UploadURL(ctx, "/uploaded", nil)
	if err != nil || !strings.HasPrefix(u.String(), s.URL()+"/_ah/upload/") {
		t.Fatalf("UploadURL = %v, %v", u, err)
	}
	code, body := postFiles(t, u.String(), [3]string{"f", "a", "x"})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "-front_addr") {
		t.Fatalf("upload without a front end: %d %s", code, body)
	}
}

// TestBlobstoreUploadFormBounded: the form the front end builds for the
// app holds a part per file with the file's name, so an upload of many
// files with long names (or of many empty files) must stay within the
// bound of the fields that are not files, or the front end would hold as
// much as the client sends. The upload is refused and nothing is kept.
func TestBlobstoreUploadFormBounded(t *testing.T) {
	s, ctx := blobServer(t, nil)
	name := strings.Repeat("n", 900<<10)
	var files [][3]string
	for range uploadFormMaxBytes/len(name) + 2 {
		files = append(files, [3]string{"f", name, ""})
	}
	u, err := blobstore.UploadURL(ctx, "/uploaded", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body := postFiles(t, u.String(), files...)
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("an upload of %d files named with %d bytes each: %d %.200s, want 413", len(files), len(name), code, body)
	}
	if n, err := datastore.NewQuery("__BlobInfo__").Count(ctx); err != nil || n != 0 {
		t.Errorf("%d blob infos stored (%v), want none", n, err)
	}
	s.blobstore.bytes.mu.Lock()
	kept := len(s.blobstore.bytes.mem)
	s.blobstore.bytes.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d blobs kept after a refused upload", kept)
	}
}

// The forms of uploads in flight share uploadFormsBudget: with four held
// at the app, a fifth waits, without using up its URL, until one is done.
func TestBlobstoreUploadFormsShareABudget(t *testing.T) {
	arrived, release := make(chan string, 5), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		<-release
	}))
	defer app.Close()
	s, err := NewServerOptions(&Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := middlewareContext(t, s)
	const held = uploadFormsBudget / uploadFormMaxBytes
	done := make(chan int, held+1)
	for i := 0; i < held+1; i++ {
		u, err := blobstore.UploadURL(ctx, fmt.Sprint("/uploaded", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := http.Post(u.String(), "multipart/form-data; boundary=b", strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nx\r\n--b--\r\n"))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for i := 0; i < held; i++ {
		<-arrived
	}
	// The fifth is waiting for its share: poll the budget's waiters until
	// it queues (the test's own timeout bounds a hang).
	for {
		s.blobstore.forms.mu.Lock()
		free, waiting := s.blobstore.forms.free, len(s.blobstore.forms.waiters)
		s.blobstore.forms.mu.Unlock()
		if waiting == 1 {
			if free != 0 {
				t.Fatalf("four uploads held at the app leave %d bytes free, want 0", free)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	release <- struct{}{} // one upload finishes: the fifth goes on to the app
	<-arrived
	close(release)
	for i := 0; i < held+1; i++ {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("an upload answered %d", code)
		}
	}
}
