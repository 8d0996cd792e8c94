package aelocal

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/urlfetch"
)

// fetchTarget is a loopback server for urlfetch tests.
func fetchTarget(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-User-Agent", r.Header.Get("User-Agent"))
		w.Header().Set("X-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		w.Header().Set("X-Custom", r.Header.Get("X-Custom"))
		w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/nolocation", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte("unzipped"))
		zw.Close()
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for i := 0; i < 33; i++ {
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestURLFetch(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		target := fetchTarget(t)
		client := urlfetch.Client(ctx)

		req, _ := http.NewRequest("POST", target.URL+"/echo", strings.NewReader("a=1"))
		req.Header.Set("User-Agent", "myapp/1")
		req.Header.Set("X-Custom", "c")
		req.Header.Set("X-Forwarded-For", "1.2.3.4")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "/echo a=1" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
		h := resp.Header
		if h.Get("X-Method") != "POST" || h.Get("X-Custom") != "c" || h.Get("X-Accept-Encoding") != "gzip" ||
			!strings.HasPrefix(h.Get("X-User-Agent"), "myapp/1 AppEngine-Google; (+http://code.google.com/appengine; appid: ") ||
			h.Get("X-Content-Type") != "application/x-www-form-urlencoded" || len(h["X-Multi"]) != 2 {
			t.Fatalf("headers %v", h)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Fatalf("ContentLength %d for %d bytes", resp.ContentLength, len(b))
		}

		// The Go client follows redirects itself, one fetch at a time.
		resp, err = client.Get(target.URL + "/redirect")
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "/echo " || resp.Request.URL.Path != "/echo" {
			t.Fatalf("after the redirect: %q at %s", b, resp.Request.URL)
		}
		// gzip the service asked for is undone.
		resp, err = client.Get(target.URL + "/gzip")
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "unzipped" || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("gzip: %q %v", b, resp.Header)
		}
		resp, err = client.Head(target.URL + "/echo")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}

		// Content past 32 MiB is cut, and the client says so. The fetch
		// gets a generous deadline of its own: moving 33 MiB under -race on
		// a loaded machine can outlast production's 5 s default, which is
		// not what this checks (TestURLFetchDeadline does).
		bigCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		resp, err = urlfetch.Client(bigCtx).Get(target.URL + "/big")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if n != 32<<20 || err != urlfetch.ErrTruncatedBody {
			t.Fatalf("big body: %d bytes, %v", n, err)
		}

		for _, c := range []struct{ url, code string }{
			{"ftp://127.0.0.1/", "INVALID_URL"},
			{"http://127.0.0.1:22/", "INVALID_URL"},
			{"http:///path", "INVALID_URL"},
			{"http://127.0.0.1:" + freePort(t) + "/", "FETCH_ERROR"},
		} {
			_, err := client.Get(c.url)
			wantAPIError(t, err, c.code, "")
		}
		_, err = client.Post(target.URL+"/echo", "text/plain", bytes.NewReader(make([]byte, 10<<20+1)))
		wantAPIError(t, err, "API error 13", "the limit is")
	})
}

func TestURLFetchDeadline(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		target := fetchTarget(t)
		// The client passes its context's deadline to the service.
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := urlfetch.Client(short).Get(target.URL + "/slow")
		if err == nil || !appengine.IsTimeoutError(err) && !strings.Contains(err.Error(), "eadline") {
			t.Fatalf("got %v, want a deadline error", err)
		}
		// The service applies the deadline itself.
		freq, _ := newMsg("appengine.v2.URLFetchRequest")
		freq.Set("Method", 1)
		freq.Set("Url", target.URL+"/slow")
		freq.Set("Deadline", 0.05)
		fresp, _ := newMsg("appengine.v2.URLFetchResponse")
		err = appengine.APICall(ctx, "urlfetch", "Fetch", protoV1(freq), protoV1(fresp))
		wantAPIError(t, err, "DEADLINE_EXCEEDED", "")
	})
}

// TestURLFetchRedirectOption drives FollowRedirects, which the Go client
// always turns off, through the raw call.
func TestURLFetchRedirectOption(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		target := fetchTarget(t)
		fetch := func(path string, method int, follow bool) (pmsg, error) {
			freq, _ := newMsg("appengine.v2.URLFetchRequest")
			freq.Set("Method", method)
			freq.Set("Url", target.URL+path)
			freq.Set("FollowRedirects", follow)
			if method == 2 {
				freq.Set("Payload", []byte("body"))
			}
			fresp, _ := newMsg("appengine.v2.URLFetchResponse")
			err := appengine.APICall(ctx, "urlfetch", "Fetch", protoV1(freq), protoV1(fresp))
			return fresp, err
		}
		r, err := fetch("/redirect", 1, true)
		if err != nil || r.Int("StatusCode") != 200 || r.Str("FinalUrl") != target.URL+"/echo" || string(r.Bytes("Content")) != "/echo " {
			t.Fatalf("followed: %v %v", r.m, err)
		}
		// A POST answered 302 is redirected as a GET without its body.
		r, err = fetch("/redirect", 2, true)
		if err != nil || string(r.Bytes("Content")) != "/echo " {
			t.Fatalf("POST followed: %v %v", r.m, err)
		}
		r, err = fetch("/redirect", 1, false)
		if err != nil || r.Int("StatusCode") != 302 || r.Has("FinalUrl") {
			t.Fatalf("not followed: %v %v", r.m, err)
		}
		_, err = fetch("/loop", 1, true)
		wantAPIError(t, err, "TOO_MANY_REDIRECTS", "")
		_, err = fetch("/nolocation", 1, true)
		wantAPIError(t, err, "MALFORMED_REPLY", "Location")
	})
}

func TestURLFetchTLS(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secret") }))
		srv.Config.ErrorLog = discardLog()
		srv.StartTLS()
		defer srv.Close()
		// The test server's certificate is not one a public CA signed.
		_, err := urlfetch.Client(ctx).Get(srv.URL)
		wantAPIError(t, err, "SSL_CERTIFICATE_ERROR", "")
		insecure := &http.Client{Transport: &urlfetch.Transport{Context: ctx, AllowInvalidServerCertificate: true}}
		resp, err := insecure.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "secret" {
			t.Fatalf("got %q", b)
		}
	})
}

func TestURLFetchDNSError(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	// No lookup leaves the machine: the dialer fails as a resolver would.
	s.fetch.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "nosuch.example", IsNotFound: true}}
	}
	_, err := urlfetch.Client(ctx).Get("http://nosuch.example/")
	wantAPIError(t, err, "DNS_ERROR", "nosuch.example")
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// discardLog silences a test server's log of the handshakes a test makes
// fail on purpose.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
