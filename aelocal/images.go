package aelocal

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	_ "image/gif" // image.Decode reads GIF too
	"image/jpeg"
	"image/png"
	"io"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// The images service's serving URLs (google.golang.org/appengine/v2/image):
// GetUrlBase gives URL()/_ah/img/BLOBKEY for an image in the blobstore, as
// dev_appserver did (production's are on lh3.googleusercontent.com), and
// records the grant as a __BlobServingUrl__ entity, as the SDK's stub does;
// DeleteUrlBase removes it, after which the URL answers 404. The server
// serves the image there with production's suffixes: none for at most
// defaultServingSize pixels on the longer side, =sN for at most N, =s0 for
// the original, -c to crop a centred square. Images are never enlarged.
//
// Decoding and scaling use the standard library (image/jpeg, image/png,
// image/gif and an area-averaging scaler of a few lines), so aelocal needs
// no new module: WebP, BMP and TIFF, which production also serves, would
// need golang.org/x/image; such a blob answers 415 here.

const (
	blobServingURLKind = "__BlobServingUrl__"
	imgPath            = "/_ah/img/"
	// defaultServingSize is the longer side of an image served without
	// =s: dev_appserver's and production's 512 pixels.
	defaultServingSize = 512
	// maxServingSize is the SDK's IMG_SERVING_SIZES_LIMIT.
	maxServingSize = 3200
	// maxImagePixels bounds the image decoded for one request: production
	// refuses images over 50 megapixels.
	maxImagePixels = 50_000_000
)

// Images error codes (appengine.v2.ImagesServiceError.ErrorCode).
const (
	imagesInvalidBlobKey = 6
	imagesObjectNotFound = 8
)

func init() {
	const p = "appengine.v2."
	register("images", "GetUrlBase", p+"ImagesGetUrlBaseRequest", p+"ImagesGetUrlBaseResponse", imagesGetURLBase)
	register("images", "DeleteUrlBase", p+"ImagesDeleteUrlBaseRequest", p+"ImagesDeleteUrlBaseResponse", imagesDeleteURLBase)
	serviceFailureCodes["images"] = 1 // UNSPECIFIED_ERROR
}

func imagesGetURLBase(s *Server, in, out pmsg) (err error) {
	key := in.Str("blob_key")
	if key == "" || len(key) > maxBlobKeyBytes {
		return errorf(imagesInvalidBlobKey, "invalid blob key")
	}
	app := blobApp()
	if s.blobInfo(app, key) == nil {
		return errorf(imagesObjectNotFound, "no blob with this key")
	}
	if in.Bool("create_secure_url") {
		// As the SDK's stub: the local server speaks HTTP only.
		log.Printf("aelocal: images: a secure serving URL was asked for; aelocal serves http only")
	}
	sp, path := nsKey{app: app}, dsPath{{kind: blobServingURLKind, name: key}}
	ep, _ := newMsg("appengine.v2.EntityProto")
	writeRef(ep.Mutable("key"), app, "", path)
	eg := ep.Mutable("entity_group").AppendMsg("element")
	eg.Set("type", blobServingURLKind)
	eg.Set("name", key)
	p := ep.AppendMsg("property")
	p.Set("name", "blob_key")
	p.Set("multiple", false)
	p.Mutable("value").Set("stringValue", key)
	e, err := newEntity(sp, path, ep)
	if err != nil {
		return err
	}
	d := s.datastore
	d.mu.Lock()
	if err = d.writableLocked(); err != nil {
		d.mu.Unlock()
		return err
	}
	d.applyLocked([]dsWrite{{sp, path, e}})
	d.unlockDurable(&err)
	if err != nil {
		return err
	}
	out.Set("url", s.URL()+imgPath+key)
	return nil
}

func imagesDeleteURLBase(s *Server, in, out pmsg) (err error) {
	key := in.Str("blob_key")
	if key == "" || len(key) > maxBlobKeyBytes {
		return errorf(imagesInvalidBlobKey, "invalid blob key")
	}
	sp, path := nsKey{app: blobApp()}, dsPath{{kind: blobServingURLKind, name: key}}
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	if d.lookupLocked(sp, path) != nil {
		d.applyLocked([]dsWrite{{sp, path, nil}})
	}
	return nil
}

// imageScaling admits one image decoding at a time, across servers.
var imageScaling = make(chan struct{}, 1)

// servingOptions are production's suffixes this server knows: s and c.
var servingOptions = regexp.MustCompile(`^s(\d{1,4})(-c)?$`)

// serveImage serves an image at its serving URL.
func (s *Server) serveImage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "aelocal: an image serving URL answers GET", http.StatusMethodNotAllowed)
		return
	}
	app := blobApp()
	rest := strings.TrimPrefix(r.URL.Path, imgPath)
	key, opts := rest, ""
	if !s.servingURLExists(app, key) {
		// The options follow the last "=" (a blob key of a Cloud Storage
		// file may itself end in "=").
		if i := strings.LastIndex(rest, "="); i >= 0 {
			key, opts = rest[:i], rest[i+1:]
		}
		if !s.servingURLExists(app, key) {
			http.Error(w, "aelocal: no image is served here (no serving URL for this blob, or it was deleted)", http.StatusNotFound)
			return
		}
	}
	size, crop := defaultServingSize, false
	if opts != "" {
		m := servingOptions.FindStringSubmatch(opts)
		if m == nil {
			http.Error(w, fmt.Sprintf("aelocal: image options %q: aelocal knows =sN and =sN-c", opts), http.StatusBadRequest)
			return
		}
		size, _ = strconv.Atoi(m[1])
		crop = m[2] != ""
		if size > maxServingSize {
			http.Error(w, fmt.Sprintf("aelocal: size %d is over the limit of %d", size, maxServingSize), http.StatusBadRequest)
			return
		}
	}
	br, n, err := s.blobstore.bytes.open(key)
	if err != nil || s.blobInfo(app, key) == nil {
		http.Error(w, "aelocal: the image's blob is gone", http.StatusNotFound)
		return
	}
	defer br.Close()
	// One image at a time: a 50-megapixel image takes some 300 MB to
	// decode and scale, and concurrent requests must not multiply that.
	// The slot is given back before the answer is sent, which lasts as
	// long as the client takes to read it.
	select {
	case imageScaling <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	body, ctype, code, err := func() ([]byte, string, int, error) {
		defer func() { <-imageScaling }()
		return scaleImage(io.NewSectionReader(br, 0, n), size, crop)
	}()
	if err != nil {
		http.Error(w, "aelocal: "+err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (s *Server) servingURLExists(app, key string) bool {
	if key == "" {
		return false
	}
	d := s.datastore
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookupLocked(nsKey{app: app}, dsPath{{kind: blobServingURLKind, name: key}}) != nil
}

// scaleImage decodes an image, scales it to at most size pixels on its
// longer side (0: as it is), or crops a centred square of at most size
// pixels, and encodes it as JPEG if it was one, else as PNG.
func scaleImage(r io.ReadSeeker, size int, crop bool) (body []byte, ctype string, code int, err error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return nil, "", http.StatusUnsupportedMediaType, fmt.Errorf("the blob is not an image aelocal can decode (JPEG, PNG, GIF): %v", err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return nil, "", http.StatusRequestEntityTooLarge, fmt.Errorf("the image has %dx%d pixels, more than %d", cfg.Width, cfg.Height, maxImagePixels)
	}
	r.Seek(0, io.SeekStart)
	src, _, err := image.Decode(r)
	if err != nil {
		return nil, "", http.StatusUnsupportedMediaType, fmt.Errorf("decoding the image: %v", err)
	}
	b := src.Bounds()
	if crop {
		side := min(b.Dx(), b.Dy())
		x0, y0 := b.Min.X+(b.Dx()-side)/2, b.Min.Y+(b.Dy()-side)/2
		b = image.Rect(x0, y0, x0+side, y0+side)
	}
	w, h := b.Dx(), b.Dy()
	if size > 0 && max(w, h) > size {
		if w >= h {
			w, h = size, max(1, (h*size+w/2)/w)
		} else {
			w, h = max(1, (w*size+h/2)/h), size
		}
	}
	dst := scaleArea(src, b, w, h)
	var buf bytes.Buffer
	if format == "jpeg" {
		err, ctype = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 90}), "image/jpeg"
	} else {
		err, ctype = png.Encode(&buf, dst), "image/png"
	}
	if err != nil {
		return nil, "", http.StatusInternalServerError, err
	}
	return buf.Bytes(), ctype, 0, nil
}

// scaleArea scales the part b of src to w x h pixels, each the average of
// the source pixels it covers (area averaging: for downscaling, what a
// box filter does well).
func scaleArea(src image.Image, b image.Rectangle, w, h int) *image.NRGBA {
	in := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(in, in.Bounds(), src, b.Min, draw.Src)
	if w == b.Dx() && h == b.Dy() {
		return in
	}
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	sw, sh := b.Dx(), b.Dy()
	for y := 0; y < h; y++ {
		y0, y1 := y*sh/h, max((y+1)*sh/h, y*sh/h+1)
		for x := 0; x < w; x++ {
			x0, x1 := x*sw/w, max((x+1)*sw/w, x*sw/w+1)
			var rs, gs, bs, as, n uint64
			for sy := y0; sy < y1; sy++ {
				row := in.Pix[sy*in.Stride:]
				for sx := x0; sx < x1; sx++ {
					p := row[sx*4 : sx*4+4]
					a := uint64(p[3])
					// Weigh colour by alpha, so transparent pixels
					// do not darken the edges.
					rs += uint64(p[0]) * a
					gs += uint64(p[1]) * a
					bs += uint64(p[2]) * a
					as += a
					n++
				}
			}
			o := out.Pix[y*out.Stride+x*4:]
			if as > 0 {
				o[0], o[1], o[2] = uint8(rs/as), uint8(gs/as), uint8(bs/as)
			}
			o[3] = uint8(as / n)
		}
	}
	return out
}
