package aelocal

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"testing"

	aeimage "google.golang.org/appengine/v2/image"
)

// stallWriter notes, when the handler writes the body, whether the image
// scaling slot is still taken: a client that does not read would hold it
// there for as long as its connection lasts.
type stallWriter struct {
	*httptest.ResponseRecorder
	heldAtWrite []int
}

func (w *stallWriter) Write(b []byte) (int, error) {
	w.heldAtWrite = append(w.heldAtWrite, len(imageScaling))
	return w.ResponseRecorder.Write(b)
}

// TestImageSlotFreeWhileSending: images are decoded one at a time, across
// servers; the slot is for the decoding and scaling only. Sending the
// result may take as long as the client takes to read it, and a client
// that stops reading must not stop every other image from being served.
func TestImageSlotFreeWhileSending(t *testing.T) {
	s, ctx := blobServer(t, nil)
	var pngData bytes.Buffer
	png.Encode(&pngData, twoColours(100, 50))
	key := uploadBlob(t, s, pngData.String())
	u, err := aeimage.ServingURL(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &stallWriter{ResponseRecorder: httptest.NewRecorder()}
	s.serveImage(w, httptest.NewRequest("GET", u.String(), nil))
	if w.Code != http.StatusOK || len(w.heldAtWrite) == 0 {
		t.Fatalf("serving the image: %d, %d writes", w.Code, len(w.heldAtWrite))
	}
	for _, held := range w.heldAtWrite {
		if held != 0 {
			t.Fatalf("the image scaling slot is taken while the answer is sent")
		}
	}
}
