package redistest

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port in front of a server. It adds a
// delay to every chunk a client sends (one command, or one pipeline of
// them, is one chunk as a rule), which puts a round trip's latency on each
// call as a network to Memorystore would; and it can stall: hold what
// clients send until Resume, so that a client's deadline passes in the
// network, as in a real timeout.
type Proxy struct {
	Addr string // where clients connect

	ln     net.Listener
	target string

	mu      sync.Mutex
	delay   time.Duration
	resumed chan struct{} // closed when not stalled
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to target and closes it (and its connections)
// when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target, resumed: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.resumed)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// SetDelay sets the delay added to each chunk from then on.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Stall holds everything clients send from then on until Resume.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
		p.resumed = make(chan struct{})
	default:
	}
}

// Resume forwards what Stall held, and what comes after.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
	default:
		close(p.resumed)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		p.wg.Add(2)
		go p.forward(s, c, true)
		go p.forward(c, s, false)
	}
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

// untrack closes conns and forgets them.
func (p *Proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

// forward copies from src to dst; toServer chunks wait for the delay and
// for a stall to end.
func (p *Proxy) forward(dst, src net.Conn, toServer bool) {
	defer p.wg.Done()
	defer p.untrack(dst, src)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		arrived := time.Now()
		if n > 0 && toServer {
			p.mu.Lock()
			d, resumed, closed := p.delay, p.resumed, p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			<-resumed
			wait(arrived, d)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the deferred closes end the other direction
		}
	}
}

// wait returns d after from. time.Sleep alone overshoots sub-millisecond
// delays by about a millisecond on a loaded machine (timer granularity),
// which would triple a 0.3 ms model: it sleeps to within 2 ms of the end,
// then yields until the moment comes.
func wait(from time.Time, d time.Duration) {
	if d <= 0 {
		return
	}
	end := from.Add(d)
	if rest := time.Until(end); rest > 2*time.Millisecond {
		time.Sleep(rest - 2*time.Millisecond)
	}
	for time.Now().Before(end) {
		runtime.Gosched()
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.Resume()
	p.ln.Close()
	p.wg.Wait()
}
