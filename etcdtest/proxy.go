package etcdtest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy in front of one etcd endpoint, for fault
// injection: it can blackhole traffic (connections stay open, bytes are
// silently dropped, as in a network partition), delay it, reset every
// connection, and refuse new ones. It is safe for concurrent use.
//
// Put one in front of a member for one client to partition just that
// client: NewProxy(t, srv.Endpoints()[0]), then NewClient(t, p.Endpoints()).
type Proxy struct {
	ln   net.Listener
	addr string

	mu        sync.Mutex
	target    string
	blackhole bool
	gate      chan struct{} // closed while traffic may flow
	refuse    bool
	delay     time.Duration
	conns     map[*proxyConn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	dead           chan struct{}
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.dead)
		c.client.Close()
		c.server.Close()
	})
}

// NewProxy starts a proxy on 127.0.0.1 with a kernel-chosen port that
// forwards to target ("host:port" or an "http://host:port" endpoint). It is
// closed at the end of the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatalf("etcdtest: proxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// StartProxy is NewProxy for code with no testing.TB; call Close when done.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, addr: ln.Addr().String(), target: hostPort(target), conns: map[*proxyConn]struct{}{}, gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func hostPort(endpoint string) string {
	for _, pre := range []string{"http://", "https://"} {
		if len(endpoint) > len(pre) && endpoint[:len(pre)] == pre {
			return endpoint[len(pre):]
		}
	}
	return endpoint
}

// Addr is the proxy's own host:port.
func (p *Proxy) Addr() string { return p.addr }

// Endpoints is the proxy's address as a client endpoint list.
func (p *Proxy) Endpoints() []string { return []string{"http://" + p.addr} }

// SetTarget points new connections at another backend; live connections
// keep their old one (call Reset to cut them).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = hostPort(target)
	p.mu.Unlock()
}

// Blackhole stops every byte in both directions from now on, on live and
// new connections, until Restore. Connections stay open and nothing is
// delivered, so the client sees requests that never answer, exactly as in
// a network partition. As with TCP across a healed partition, what was
// sent during the blackhole is delivered late after Restore (unless Reset
// cuts the connections first): bytes are held, never dropped, because
// dropping part of a stream would corrupt it rather than partition it.
func (p *Proxy) Blackhole() {
	p.set(func() {
		if !p.blackhole {
			p.blackhole = true
			p.gate = make(chan struct{})
		}
	})
}

// Delay holds every chunk of traffic in both directions for d before
// passing it on (order is kept). Zero removes the delay.
func (p *Proxy) Delay(d time.Duration) { p.set(func() { p.delay = d }) }

// Restore ends Blackhole, Delay and Refuse.
func (p *Proxy) Restore() {
	p.set(func() {
		if p.blackhole {
			close(p.gate)
		}
		p.blackhole, p.delay, p.refuse = false, 0, false
	})
}

// Refuse closes every new connection at once, as a stopped server would.
// Live connections are untouched; combine with Reset to cut them too.
func (p *Proxy) Refuse() { p.set(func() { p.refuse = true }) }

// Reset closes every live connection, as a crashed server would.
func (p *Proxy) Reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[*proxyConn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.close()
	}
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	p.mu.Unlock()
}

func (p *Proxy) state() (gate chan struct{}, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate, p.delay
}

// Conns returns how many connections the proxy carries now: once it is 0
// after the clients closed, nothing they sent can still reach the server.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse, target, closed := p.refuse, p.target, p.closed
		p.mu.Unlock()
		if refuse || closed {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c, target)
	}
}

func (p *Proxy) serve(client net.Conn, target string) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	pc := &proxyConn{client: client, server: server, dead: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pc.close()
		return
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pc, server, client); pc.close() }()
	go func() { defer wg.Done(); p.pipe(pc, client, server); pc.close() }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst. Reading and writing run in separate goroutines
// joined by a queue, so a delay holds each chunk for its own d from the
// moment it arrived instead of adding up across chunks.
func (p *Proxy) pipe(pc *proxyConn, dst io.Writer, src io.Reader) {
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			if d := time.Until(c.at); d > 0 {
				select {
				case <-time.After(d):
				case <-pc.dead:
				}
			}
			for {
				gate, _ := p.state()
				select {
				case <-gate:
				case <-pc.dead:
				}
				// A Blackhole between the gate opening and here must
				// still hold this chunk, so look again.
				if g, _ := p.state(); g == gate {
					break
				}
			}
			if _, err := dst.Write(c.data); err != nil {
				// Drain so the reader never blocks on a dead writer.
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			_, delay := p.state()
			select {
			case q <- chunk{data: append([]byte(nil), buf[:n]...), at: time.Now().Add(delay)}:
			case <-pc.dead:
			}
		}
		if err != nil {
			break // EOF or a reset connection: either way this side is done
		}
	}
	close(q)
	<-done
}
