package aelocal

import (
	"net/http"
	"strconv"
	"time"
)

// The blobstore page: the app's blobs (its __BlobInfo__ entities), newest
// first, in pages, and a link to each blob's image serving URL if it has
// one. The console does not serve the blobs' contents, which could be
// anything, from its own origin.

const blobsPerPage = 50

type blobView struct {
	Key, Filename, ContentType, MD5, ObjectName string
	Size                                        int
	Created                                     time.Time
	ServingURL                                  string
}

type blobsPage struct {
	Blobs         []blobView
	Offset, Total int
	InMemory      bool
	MemoryLimit   int
}

// Prev is the offset of the previous page, -1 on the first.
func (p *blobsPage) Prev() int {
	if p.Offset == 0 {
		return -1
	}
	return max(0, p.Offset-blobsPerPage)
}

// End is the 1-based number of the last blob shown.
func (p *blobsPage) End() int { return p.Offset + len(p.Blobs) }

// More reports whether older blobs follow this page.
func (p *blobsPage) More() bool { return p.End() < p.Total }

// Query is the URL of the listing at offset.
func (p *blobsPage) Query(offset int) string {
	if offset <= 0 {
		return "/blobstore"
	}
	return "/blobstore?offset=" + strconv.Itoa(offset)
}

func (c *console) blobstoreRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /blobstore", c.serveBlobstore)
}

func (c *console) serveBlobstore(w http.ResponseWriter, r *http.Request) {
	app := blobApp()
	infos := c.s.blobInfos(app)
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	offset = max(0, min(offset, len(infos)))
	d := &blobsPage{Offset: offset, Total: len(infos), InMemory: c.s.blobstore.bytes.dir == "", MemoryLimit: blobMemoryLimit}
	for _, bi := range infos[offset:min(len(infos), offset+blobsPerPage)] {
		v := blobView{Key: bi.key, Filename: bi.filename, ContentType: bi.contentType, MD5: bi.md5, ObjectName: bi.gsObject, Size: int(bi.size), Created: bi.creation}
		if c.s.servingURLExists(app, bi.key) {
			v.ServingURL = imgPath + bi.key
		}
		d.Blobs = append(d.Blobs, v)
	}
	c.render(w, r, http.StatusOK, "blobstore", &consolePage{Title: "Blobstore", Section: "Blobstore", Data: d})
}
