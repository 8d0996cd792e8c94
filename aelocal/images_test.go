package aelocal

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/blobstore"
	aeimage "google.golang.org/appengine/v2/image"
)

// twoColours is a w x h image, red on its left half and blue on its right.
func twoColours(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{255, 0, 0, 255}
			if x >= w/2 {
				c = color.NRGBA{0, 0, 255, 255}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

// uploadBlob stores content as a blob through the front end and returns
// its key.
func uploadBlob(t *testing.T, s *Server, content string) appengine.BlobKey {
	t.Helper()
	u, err := blobstore.UploadURL(middlewareContext(t, s), "/uploaded", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, got := postFiles(t, u.String(), [3]string{"f", "file", content})
	if code != 200 {
		t.Fatalf("upload: %d %s", code, got)
	}
	return appengine.BlobKey(strings.Fields(strings.Split(got, "\n")[1])[1])
}

func fetchImage(t *testing.T, u string) (int, string, image.Image) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m, _, _ := image.Decode(bytes.NewReader(b))
	return resp.StatusCode, resp.Header.Get("Content-Type"), m
}

// TestImageServingURL shows production's answers for serving URLs (its
// documented suffixes, the SDK stub's __BlobServingUrl__) next to
// aelocal's.
func TestImageServingURL(t *testing.T) {
	s, ctx := blobServer(t, nil)
	var pngData bytes.Buffer
	png.Encode(&pngData, twoColours(1000, 500))
	key := uploadBlob(t, s, pngData.String())
	u, err := aeimage.ServingURL(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := s.URL() + "/_ah/img/" + string(key); u.String() != want {
		t.Fatalf("ServingURL = %s, want %s", u, want)
	}
	for _, c := range []struct {
		suffix     string
		code, w, h int
	}{
		{"", 200, 512, 256},        // no size: at most 512 pixels
		{"=s100", 200, 100, 50},    // the longer side
		{"=s100-c", 200, 100, 100}, // a centred square
		{"=s0", 200, 1000, 500},    // the original
		{"=s2000", 200, 1000, 500}, // never enlarged
		{"=s2000-c", 200, 500, 500},
		{"=s3201", 400, 0, 0}, // past IMG_SERVING_SIZES_LIMIT
		{"=x100", 400, 0, 0},
	} {
		code, ctype, m := fetchImage(t, u.String()+c.suffix)
		if code != c.code {
			t.Errorf("%q: %d, want %d", c.suffix, code, c.code)
			continue
		}
		if code != 200 {
			continue
		}
		if ctype != "image/png" || m == nil || m.Bounds().Dx() != c.w || m.Bounds().Dy() != c.h {
			t.Errorf("%q: %s %v, want %dx%d", c.suffix, ctype, m.Bounds(), c.w, c.h)
			continue
		}
		// Left red, right blue, whatever the scale or crop.
		l, r := color.NRGBAModel.Convert(m.At(1, c.h/2)).(color.NRGBA), color.NRGBAModel.Convert(m.At(c.w-2, c.h/2)).(color.NRGBA)
		if l != (color.NRGBA{255, 0, 0, 255}) || r != (color.NRGBA{0, 0, 255, 255}) {
			t.Errorf("%q: left %v right %v", c.suffix, l, r)
		}
	}
	// A JPEG stays a JPEG.
	var jpegData bytes.Buffer
	jpeg.Encode(&jpegData, twoColours(64, 32), nil)
	jkey := uploadBlob(t, s, jpegData.String())
	ju, _ := aeimage.ServingURL(ctx, jkey, &aeimage.ServingURLOptions{Size: 32, Crop: true})
	if !strings.HasSuffix(ju.String(), "=s32-c") {
		t.Fatalf("ServingURL with size and crop = %s", ju)
	}
	if code, ctype, m := fetchImage(t, ju.String()); code != 200 || ctype != "image/jpeg" || m.Bounds().Dx() != 32 || m.Bounds().Dy() != 32 {
		t.Errorf("JPEG =s32-c: %d %s %v", code, ctype, m)
	}
	// A GIF is served as PNG.
	var gifData bytes.Buffer
	gif.Encode(&gifData, twoColours(40, 20), nil)
	gkey := uploadBlob(t, s, gifData.String())
	gu, _ := aeimage.ServingURL(ctx, gkey, &aeimage.ServingURLOptions{Size: 10})
	if code, ctype, m := fetchImage(t, gu.String()); code != 200 || ctype != "image/png" || m.Bounds().Dx() != 10 || m.Bounds().Dy() != 5 {
		t.Errorf("GIF =s10: %d %s %v", code, ctype, m)
	}
	// Past production's 50 megapixels: refused before decoding. A PNG's
	// header alone says its size.
	ihdr := []byte("IHDR\x00\x00\x27\x10\x00\x00\x27\x10\x08\x06\x00\x00\x00") // 10000 x 10000, RGBA
	var huge bytes.Buffer
	huge.WriteString("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
	huge.Write(ihdr)
	binary.Write(&huge, binary.BigEndian, crc32.ChecksumIEEE(ihdr))
	hkey := uploadBlob(t, s, huge.String())
	hu, _ := aeimage.ServingURL(ctx, hkey, nil)
	if code, _, _ := fetchImage(t, hu.String()); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 100-megapixel image: %d", code)
	}
	// Not an image: the URL is given (production does not look), the
	// image is not served.
	tkey := uploadBlob(t, s, "plain text")
	tu, err := aeimage.ServingURL(ctx, tkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := fetchImage(t, tu.String()); code != http.StatusUnsupportedMediaType {
		t.Errorf("a text blob: %d", code)
	}
	// Errors: a blob that does not exist, no key.
	if _, err := aeimage.ServingURL(ctx, "no-such-blob", nil); !isAPIError(err, "images", 8) {
		t.Errorf("ServingURL of a missing blob: %v", err)
	}
	if _, err := aeimage.ServingURL(ctx, "", nil); !isAPIError(err, "images", 6) {
		t.Errorf("ServingURL without a key: %v", err)
	}
	// A POST changes nothing and is refused.
	if resp, err := http.Post(u.String(), "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to a serving URL: %v %v", resp.StatusCode, err)
	}
	// DeleteServingURL: the URL stops serving; the blob stays.
	if err := aeimage.DeleteServingURL(ctx, key); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := fetchImage(t, u.String()+"=s100"); code != http.StatusNotFound {
		t.Errorf("after DeleteServingURL: %d", code)
	}
	if _, err := blobstore.Stat(ctx, key); err != nil {
		t.Errorf("the blob after DeleteServingURL: %v", err)
	}
	// Deleting the blob ends its serving URL too.
	blobstore.Delete(ctx, jkey)
	if code, _, _ := fetchImage(t, ju.String()); code != http.StatusNotFound {
		t.Errorf("after the blob's Delete: %d", code)
	}
}

// TestBlobsBothPaths: the blobstore and images clients on both of a test's
// ways to the server.
func TestBlobsBothPaths(t *testing.T) {
	bothPathsWith(t, func(t *testing.T) *Options {
		app := blobTestApp()
		t.Cleanup(app.Close)
		return &Options{AppURL: app.URL, FrontAddr: "127.0.0.1:0"}
	}, func(t *testing.T, s *Server, ctx context.Context) {
		u, err := blobstore.UploadURL(ctx, "/uploaded", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, got := postFiles(t, u.String(), [3]string{"f", "a.txt", "both ways"})
		key := appengine.BlobKey(strings.Fields(strings.Split(got, "\n")[1])[1])
		if bi, err := blobstore.Stat(ctx, key); err != nil || bi.Size != 9 {
			t.Fatalf("Stat: %+v, %v", bi, err)
		}
		if b, err := io.ReadAll(blobstore.NewReader(ctx, key)); err != nil || string(b) != "both ways" {
			t.Fatalf("read: %q, %v", b, err)
		}
		if _, err := aeimage.ServingURL(ctx, key, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := aeimage.ServingURL(ctx, "missing", nil); !isAPIError(err, "images", 8) {
			t.Errorf("ServingURL of a missing blob: %v", err)
		}
		if err := aeimage.DeleteServingURL(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := blobstore.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(blobstore.NewReader(ctx, key)); !isAPIError(err, "blobstore", 4) {
			t.Errorf("read after Delete: %v", err)
		}
	})
}
