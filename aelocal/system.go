package aelocal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
	"time"
)

// The system service, which google.golang.org/appengine/v2/runtime calls:
// GetSystemStats (runtime.Stats) and StartBackgroundRequest
// (runtime.RunInBackground). Its messages are described here rather than
// taken from the runtime package, whose init registers an /_ah/background
// handler on http.DefaultServeMux in every binary that links it.

// sysPkg is the package of the system service's messages, as their full
// names start.
const sysPkg = "aelocal.system."

// SystemServiceError codes, as system_service.proto numbers them.
const (
	sysInternalError = 1
	sysLimitReached  = 3
)

// maxBackgroundRequests is how many background requests may be in flight
// at once; past it StartBackgroundRequest answers LIMIT_REACHED, as
// production does past an instance's limit of 10 background threads.
const maxBackgroundRequests = 10

func init() {
	registerDescribed("aelocal.system", []describedMessage{
		{"SystemStat", []describedField{
			{"current", 1, pbDouble, false, ""}, {"average1m", 3, pbDouble, false, ""}, {"average10m", 4, pbDouble, false, ""},
			{"total", 2, pbDouble, false, ""}, {"rate1m", 5, pbDouble, false, ""}, {"rate10m", 6, pbDouble, false, ""},
		}},
		{"GetSystemStatsRequest", nil},
		{"GetSystemStatsResponse", []describedField{{"cpu", 1, pbMsg, false, "SystemStat"}, {"memory", 2, pbMsg, false, "SystemStat"}}},
		{"StartBackgroundRequestRequest", nil},
		{"StartBackgroundRequestResponse", []describedField{{"request_id", 1, pbString, false, ""}}},
	})
	register("system", "GetSystemStats", sysPkg+"GetSystemStatsRequest", sysPkg+"GetSystemStatsResponse", sysGetSystemStats)
	register("system", "StartBackgroundRequest", sysPkg+"StartBackgroundRequestRequest", sysPkg+"StartBackgroundRequestResponse", sysStartBackgroundRequest)
}

// systemService sends background requests to the app.
type systemService struct {
	client *http.Client
	ctx    context.Context // ended by stop, which ends the requests in flight
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inFlight int
}

func newSystemService() *systemService {
	ctx, stop := context.WithCancel(context.Background())
	return &systemService{client: &http.Client{Transport: newAppTransport()}, ctx: ctx, stop: stop}
}

// close ends the background requests in flight and waits for them.
func (sys *systemService) close() {
	sys.stop()
	sys.wg.Wait()
	sys.client.CloseIdleConnections()
}

// sysGetSystemStats answers with no figures, as the SDK's stub does: the
// app runs in another process (or is the test itself), so aelocal has no
// instance whose CPU and memory it could report; runtime.Stats then reads
// zeros.
func sysGetSystemStats(s *Server, in, out pmsg) error { return nil }

// sysStartBackgroundRequest sends the app a GET /_ah/background with the
// new request's ID in X-AppEngine-BackgroundRequest, as production starts
// a background request on a manual or basic scaling instance; the runtime
// package's handler there runs the function RunInBackground was given.
func sysStartBackgroundRequest(s *Server, in, out pmsg) error {
	if s.appURL == "" {
		return &serviceError{code: sysInternalError, detail: "aelocal sends background requests to the app at -app_url (Options.AppURL), and none is set"}
	}
	sys := s.system
	sys.mu.Lock()
	if sys.inFlight >= maxBackgroundRequests {
		sys.mu.Unlock()
		return &serviceError{code: sysLimitReached, detail: fmt.Sprintf("%d background requests are running, the most at once", maxBackgroundRequests)}
	}
	sys.inFlight++
	sys.wg.Add(1)
	sys.mu.Unlock()

	var b [8]byte
	rand.Read(b[:])
	id := fmt.Sprintf("%x", binary.BigEndian.Uint64(b[:])) // the stub's form
	out.Set("request_id", id)
	go func() {
		defer func() {
			sys.mu.Lock()
			sys.inFlight--
			sys.mu.Unlock()
			sys.wg.Done()
		}()
		sys.send(s.appURL, id)
	}()
	return nil
}

// send makes the background request and waits for the app's answer,
// which is read and dropped.
func (sys *systemService) send(appURL, id string) {
	req, err := http.NewRequestWithContext(sys.ctx, "GET", appURL+"/_ah/background", nil)
	if err != nil {
		log.Printf("aelocal: background request: %v", err)
		return
	}
	req.Header.Set("X-AppEngine-BackgroundRequest", id)
	start := time.Now()
	resp, err := sys.client.Do(req)
	if err != nil {
		if sys.ctx.Err() == nil {
			log.Printf("aelocal: background request: the app at %s did not answer: %v", appURL, err)
		}
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Printf("aelocal: background request: the app answered %s after %v", resp.Status, time.Since(start).Round(time.Millisecond))
	}
}
