package aelocal

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/blobstore"
	"google.golang.org/appengine/v2/datastore"
	aeimage "google.golang.org/appengine/v2/image"
)

// TestBlobstoreWritesRefusedAfterFileFailure: once the datastore file has
// failed, the blobstore's and images' own writes to the datastore (blob
// infos, serving URLs) are refused before they change anything, as the
// datastore's are: an upload stores nothing, a Delete keeps the blob
// whole, and a serving URL is neither made nor removed.
func TestBlobstoreWritesRefusedAfterFileFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds")
	s, ctx := blobServer(t, &Options{DatastorePath: path})
	u, _ := blobstore.UploadURL(ctx, "/uploaded", nil)
	_, got := postFiles(t, u.String(), [3]string{"f", "kept.txt", "kept"})
	key := appengine.BlobKey(strings.Fields(strings.Split(got, "\n")[1])[1])
	if _, err := aeimage.ServingURL(ctx, key, nil); err != nil {
		t.Fatal(err)
	}

	failJournalWrites(t, s, path)
	_, err := datastore.Put(ctx, datastore.NewKey(ctx, "W", "k", 0, nil), &fItem{V: "lost"})
	wantAPIError(t, err, "INTERNAL_ERROR", "may not survive a restart")
	before := saved(t, s)

	u, err = blobstore.UploadURL(ctx, "/uploaded", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postFiles(t, u.String(), [3]string{"f", "refused.txt", "refused"}); code == 200 {
		t.Errorf("an upload after the file failed: %d %s", code, body)
	}
	if err := blobstore.Delete(ctx, key); err == nil {
		t.Error("a Delete after the file failed succeeded")
	}
	if err := aeimage.DeleteServingURL(ctx, key); err == nil {
		t.Error("a DeleteServingURL after the file failed succeeded")
	}
	if after := saved(t, s); string(after) != string(before) {
		t.Error("a refused write changed the datastore in memory")
	}
	if b, err := io.ReadAll(blobstore.NewReader(ctx, key)); err != nil || string(b) != "kept" {
		t.Errorf("the blob after a refused Delete: %q, %v", b, err)
	}
	if ents, _ := filepath.Glob(path + ".blobs/blob-*"); len(ents) != 1 {
		t.Errorf("blob files after the refused upload: %v, want the first one only", ents)
	}
}
