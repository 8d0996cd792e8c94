package aelocal

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Application error codes of urlfetch (URLFetchServiceError.ErrorCode).
const (
	ufInvalidURL          = 1
	ufFetchError          = 2
	ufDeadlineExceeded    = 5
	ufSSLCertificateError = 6
	ufDNSError            = 7
	ufTooManyRedirects    = 10
	ufMalformedReply      = 11
	ufPayloadTooLarge     = 13 // in production's enum; the Go client's stops at 12
)

// Limits of the production service, as the SDK's stub applies them.
const (
	ufMaxURLLength     = 10240
	ufMaxRequestBytes  = 10 << 20
	ufMaxResponseBytes = 32 << 20 // longer content is cut and flagged truncated
	ufMaxRedirects     = 5
	// A fetch without a deadline of its own gets production's default.
	ufDefaultDeadline = 5 * time.Second
)

// Headers an app may not set on a fetch; they are dropped, as production
// and the stub do.
var ufDroppedHeaders = map[string]bool{
	"Content-Length": true, "Host": true, "Vary": true, "Via": true, "X-Forwarded-For": true,
}

var ufMethods = map[int64]string{1: "GET", 2: "POST", 3: "HEAD", 4: "PUT", 5: "DELETE", 6: "PATCH"}

// urlfetchService implements the "urlfetch" service: it makes the request.
type urlfetchService struct {
	// dial opens connections; tests replace it to keep fetches on the
	// loopback interface.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newURLFetchService() *urlfetchService {
	d := &net.Dialer{Timeout: 30 * time.Second}
	return &urlfetchService{dial: d.DialContext}
}

func init() {
	register("urlfetch", "Fetch", "appengine.v2.URLFetchRequest", "appengine.v2.URLFetchResponse", urlfetchFetch)
}

// allowedPort is production's rule: 80-90, 440-450 and 1024 and above.
func allowedPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return false
	}
	return (n >= 80 && n <= 90) || (n >= 440 && n <= 450) || (n >= 1024 && n <= 65535)
}

func urlfetchFetch(s *Server, in, out pmsg) error {
	rawURL := in.Str("Url")
	if len(rawURL) > ufMaxURLLength {
		return errorf(ufInvalidURL, "the URL is %d bytes; the limit is %d", len(rawURL), ufMaxURLLength)
	}
	method, ok := ufMethods[in.Int("Method")]
	if !ok {
		return errorf(ufInvalidURL, "unknown method %d", in.Int("Method"))
	}
	var payload []byte
	if method == "POST" || method == "PUT" || method == "PATCH" {
		payload = in.Bytes("Payload")
		if len(payload) > ufMaxRequestBytes {
			return errorf(ufPayloadTooLarge, "the payload is %d bytes; the limit is %d", len(payload), ufMaxRequestBytes)
		}
	}
	u, err := checkFetchURL(rawURL)
	if err != nil {
		return err
	}
	header := make(http.Header)
	passEncoding := false
	for _, h := range in.Msgs("header") {
		k := http.CanonicalHeaderKey(h.Str("Key"))
		if ufDroppedHeaders[k] {
			continue
		}
		if k == "Accept-Encoding" {
			passEncoding = true // the app decodes what it asked for
		}
		header.Add(k, h.Str("Value"))
	}
	ua := "AppEngine-Google; (+http://code.google.com/appengine; appid: " + os.Getenv("GAE_APPLICATION") + ")"
	if app := header.Get("User-Agent"); app != "" {
		ua = app + " " + ua
	}
	header.Set("User-Agent", ua)
	if !passEncoding {
		header.Set("Accept-Encoding", "gzip")
	}
	if method == "POST" && len(payload) > 0 && header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/x-www-form-urlencoded")
	}

	deadline := ufDefaultDeadline
	if in.Has("Deadline") {
		if d := in.Float("Deadline"); d > 0 {
			deadline = time.Duration(d * float64(time.Second))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	client := s.fetch.client(!in.Has("MustValidateServerCertificate") || in.Bool("MustValidateServerCertificate"))
	defer client.CloseIdleConnections()
	follow := !in.Has("FollowRedirects") || in.Bool("FollowRedirects")
	for redirects := 0; ; redirects++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(payload))
		if err != nil {
			return errorf(ufInvalidURL, "%v", err)
		}
		if payload == nil {
			req.Body, req.ContentLength = nil, 0
		}
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return fetchError(err, ctx)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, ufMaxResponseBytes+1))
		resp.Body.Close()
		if err != nil {
			return fetchError(err, ctx)
		}
		if resp.StatusCode >= 600 {
			return errorf(ufFetchError, "status %d unknown", resp.StatusCode)
		}
		if follow && isRedirect(resp.StatusCode) {
			loc := resp.Header.Get("Location")
			if loc == "" {
				return errorf(ufMalformedReply, "missing Location header for redirect")
			}
			if redirects == ufMaxRedirects {
				return errorf(ufTooManyRedirects, "too many repeated redirects")
			}
			next, err := u.Parse(loc)
			if err != nil {
				return errorf(ufInvalidURL, "redirect to an invalid URL %q", loc)
			}
			if u, err = checkFetchURL(next.String()); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusTemporaryRedirect && method != "GET" && method != "HEAD" {
				method, payload = "GET", nil
				header.Del("Content-Type")
			}
			continue
		}
		return fillFetchResponse(out, resp, body, method, passEncoding, u.String(), rawURL)
	}
}

func isRedirect(code int) bool {
	return code == http.StatusMovedPermanently || code == http.StatusFound ||
		code == http.StatusSeeOther || code == http.StatusTemporaryRedirect
}

// checkFetchURL accepts absolute http and https URLs on production's ports.
func checkFetchURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errorf(ufInvalidURL, "invalid URL %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errorf(ufInvalidURL, "invalid URL %q: the scheme must be http or https", raw)
	}
	if u.Hostname() == "" {
		return nil, errorf(ufInvalidURL, "invalid URL %q: no host", raw)
	}
	if !allowedPort(u.Port()) {
		return nil, errorf(ufInvalidURL, "invalid URL %q: port %s is not allowed in production (80-90, 440-450, 1024 and above)", raw, u.Port())
	}
	return u, nil
}

// fillFetchResponse copies the answer. Content past 32 MiB is cut and the
// response says so; gzip the service asked for is undone.
func fillFetchResponse(out pmsg, resp *http.Response, body []byte, method string, passEncoding bool, finalURL, rawURL string) error {
	gzipped := strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") && !passEncoding
	if gzipped && len(body) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return errorf(ufMalformedReply, "the gzip content does not decode: %v", err)
		}
		body, err = io.ReadAll(io.LimitReader(zr, ufMaxResponseBytes+1))
		if err != nil {
			return errorf(ufMalformedReply, "the gzip content does not decode: %v", err)
		}
	}
	truncated := len(body) > ufMaxResponseBytes
	if truncated {
		body = body[:ufMaxResponseBytes]
	}
	out.Set("StatusCode", resp.StatusCode)
	if method != "HEAD" {
		out.Set("Content", body)
	}
	for k, vs := range resp.Header {
		switch {
		case k == "Content-Encoding" && gzipped:
			continue
		case k == "Content-Length" && method != "HEAD":
			vs = []string{strconv.Itoa(len(body))}
		}
		for _, v := range vs {
			h := out.AppendMsg("header")
			h.Set("Key", k)
			h.Set("Value", v)
		}
	}
	if method != "HEAD" && resp.Header.Get("Content-Length") == "" {
		h := out.AppendMsg("header")
		h.Set("Key", "Content-Length")
		h.Set("Value", strconv.Itoa(len(body)))
	}
	if truncated {
		out.Set("ContentWasTruncated", true)
	}
	if finalURL != rawURL {
		out.Set("FinalUrl", finalURL)
	}
	return nil
}

// client makes an http.Client that neither follows redirects (the service
// does, by the request's option) nor keeps connections past the fetch.
func (f *urlfetchService) client(validate bool) *http.Client {
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         f.dial,
		TLSHandshakeTimeout: 30 * time.Second,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: !validate},
		DisableCompression:  true, // gzip is this service's business
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetchError maps a failed request to production's codes.
func fetchError(err error, ctx context.Context) error {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return errorf(ufDeadlineExceeded, "the deadline passed before the server answered")
	case errors.As(err, &dnsErr):
		return errorf(ufDNSError, "DNS lookup failed: %v", dnsErr)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recordErr):
		return errorf(ufSSLCertificateError, "%v", err)
	}
	return errorf(ufFetchError, "%v", err)
}
