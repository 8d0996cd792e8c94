package aelocal_test

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
)

// BenchmarkParallelLargeBodies sends 16 bridge calls of 60 MiB at once
// and reports how far the server's heap rose. Each body is a
// remote_api.Request whose inner request is 60 MiB of zeros (a call that
// fails to parse, after the whole body was read).
//
//	go test -run '^$' -bench BenchmarkParallelLargeBodies -benchtime 1x -count 3 ./aelocal
func BenchmarkParallelLargeBodies(b *testing.B) {
	s, err := aelocal.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const size = 60 << 20
	// remote_api.Request: service_name (2), method (3), request (4).
	body := []byte{0x12, 1, 'x', 0x1a, 1, 'y', 0x22}
	for n := size; ; n >>= 7 {
		if n < 0x80 {
			body = append(body, byte(n))
			break
		}
		body = append(body, byte(n)|0x80)
	}
	body = append(body, make([]byte, size)...)
	var peak uint64
	for i := 0; i < b.N; i++ {
		peak = max(peak, peakHeap(func() {
			var wg sync.WaitGroup
			for c := 0; c < 16; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest("POST", s.URL()+"/rpc_http", bytes.NewReader(body))
					req.Header.Set("X-Google-RPC-Service-Endpoint", "app-engine-apis")
					req.Header.Set("X-Google-RPC-Service-Method", "/VMRemoteAPI.CallRemoteAPI")
					req.Header.Set("Content-Type", "application/octet-stream")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}()
			}
			wg.Wait()
		}))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
