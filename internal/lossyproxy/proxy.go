package lossyproxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Direction is the way a datagram travels through the proxy.
type Direction int

const (
	// ToServer is client → proxy → server.
	ToServer Direction = iota
	// ToClient is server → proxy → client.
	ToClient
)

func (d Direction) String() string {
	switch d {
	case ToServer:
		return "ToServer"
	case ToClient:
		return "ToClient"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Verdict is a [Config.Filter]'s decision for one datagram.
type Verdict int

const (
	// Default applies the configured probabilities.
	Default Verdict = iota
	// Pass forwards the datagram once, immediately, ignoring the probabilities.
	Pass
	// Drop drops the datagram.
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Default:
		return "Default"
	case Pass:
		return "Pass"
	case Drop:
		return "Drop"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// DefaultReorderDelay is how long a reordered datagram is held when
// Config.ReorderDelay is zero.
const DefaultReorderDelay = 30 * time.Millisecond

// closeTimeout bounds how long Close waits for the proxy's goroutines.
const closeTimeout = 5 * time.Second

// maxDatagram is the read buffer size: the largest UDP payload.
const maxDatagram = 65535

// Config sets the impairments. The zero Config forwards everything.
type Config struct {
	// Drop, Duplicate and Reorder are probabilities in [0, 1], applied to each
	// datagram in each direction (see the package documentation).
	Drop, Duplicate, Reorder float64
	// ReorderDelay is how long a reordered datagram is held back
	// (DefaultReorderDelay if zero).
	ReorderDelay time.Duration
	// Seed seeds the deterministic math/rand/v2 sources, one per direction.
	Seed int64
	// Filter, if not nil, is asked first about every datagram: dir is its
	// direction, n its index in that direction counting from 0 (over all
	// clients), datagram its payload, which Filter must neither modify nor
	// retain. Returning Default applies the probabilities. Calls for one
	// direction are serialized; calls for the two directions may run
	// concurrently. Filter must not call the Proxy's Close.
	Filter func(dir Direction, n int, datagram []byte) Verdict
	// Rewrite, if not nil, replaces every datagram that is forwarded (after
	// Filter and the impairments) by what it returns, to play a peer that
	// reads datagrams its own way. It may return its argument; calls follow
	// Filter's rules.
	Rewrite func(dir Direction, datagram []byte) []byte
	// Rebind, if not nil, is asked before the client's nth datagram
	// (counting from 0) is relayed; true moves the client's flow to a new
	// upstream socket, so the server sees a new source port, as after a
	// NAT rebinding. Replies to the old port are lost.
	Rebind func(n int) bool
}

// DirStats counts one direction's datagrams.
type DirStats struct {
	// Received and ReceivedBytes count what arrived from the sender.
	Received, ReceivedBytes uint64
	// Forwarded and ForwardedBytes count what was written towards the
	// receiver; a duplicated datagram counts twice, a held one once released.
	Forwarded, ForwardedBytes uint64
	// Dropped counts datagrams not forwarded at all.
	Dropped uint64
	// Duplicated counts datagrams that were sent twice.
	Duplicated uint64
	// Reordered counts datagrams held back for ReorderDelay.
	Reordered uint64
	// WriteErrors counts failed writes (each copy of a duplicate counts).
	WriteErrors uint64
}

// Stats holds both directions' counters.
type Stats struct {
	ToServer, ToClient DirStats
}

// Dir returns the counters for d.
func (s Stats) Dir(d Direction) DirStats {
	if d == ToClient {
		return s.ToClient
	}
	return s.ToServer
}

// Proxy relays datagrams between one client and a server. It is safe for
// concurrent use.
type Proxy struct {
	cfg     Config
	server  netip.AddrPort
	upLocal *net.UDPAddr // where upstream sockets bind
	ln      *net.UDPConn

	dirs [2]dirState

	statsMu sync.Mutex
	stats   [2]DirStats

	mu     sync.Mutex // guards the fields below
	closed bool
	flows  map[netip.AddrPort]*flow
	held   map[*heldDatagram]struct{}

	wg sync.WaitGroup
}

// dirState is one direction's decision state.
type dirState struct {
	mu  sync.Mutex
	rng *rand.Rand
	n   int
}

// flow is one client address with its own socket towards the server.
type flow struct {
	client netip.AddrPort
	up     *net.UDPConn // guarded by Proxy.mu
	sent   int          // client datagrams relayed, for Rebind
}

type heldDatagram struct {
	t *time.Timer
}

// New starts a proxy listening on 127.0.0.1 (on a free port) that relays to
// server, which must be a loopback address.
func New(server *net.UDPAddr, cfg Config) (*Proxy, error) {
	if server == nil {
		return nil, errors.New("lossyproxy: nil server address")
	}
	srv := server.AddrPort()
	srv = netip.AddrPortFrom(srv.Addr().Unmap(), srv.Port())
	if !srv.Addr().IsLoopback() || srv.Port() == 0 {
		return nil, fmt.Errorf("lossyproxy: server %v is not a loopback address with a port", server)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"Drop", cfg.Drop}, {"Duplicate", cfg.Duplicate}, {"Reorder", cfg.Reorder}} {
		if !(p.v >= 0 && p.v <= 1) {
			return nil, fmt.Errorf("lossyproxy: %s probability %v not in [0, 1]", p.name, p.v)
		}
	}
	if cfg.ReorderDelay < 0 {
		return nil, fmt.Errorf("lossyproxy: negative ReorderDelay %v", cfg.ReorderDelay)
	}
	if cfg.ReorderDelay == 0 {
		cfg.ReorderDelay = DefaultReorderDelay
	}

	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("lossyproxy: listen: %w", err)
	}
	upLocal := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if srv.Addr().Is6() {
		upLocal = &net.UDPAddr{IP: net.IPv6loopback}
	}
	p := &Proxy{
		cfg:     cfg,
		server:  srv,
		upLocal: upLocal,
		ln:      ln,
		flows:   make(map[netip.AddrPort]*flow),
		held:    make(map[*heldDatagram]struct{}),
	}
	for d := range p.dirs {
		p.dirs[d].rng = rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15+uint64(d)))
	}
	p.wg.Add(1)
	go p.clientLoop()
	return p, nil
}

// Addr is the address the client should send to.
func (p *Proxy) Addr() *net.UDPAddr {
	a := p.ln.LocalAddr().(*net.UDPAddr)
	return &net.UDPAddr{IP: append(net.IP(nil), a.IP...), Port: a.Port, Zone: a.Zone}
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	return Stats{ToServer: p.stats[ToServer], ToClient: p.stats[ToClient]}
}

// Close stops the proxy: it closes its sockets, discards held datagrams and
// waits (at most a few seconds) for its goroutines to end. Calling it again
// returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for h := range p.held {
		if h.t.Stop() {
			p.wg.Done() // its callback will never run
		}
	}
	p.held = nil
	err := p.ln.Close()
	for _, f := range p.flows {
		if cerr := f.up.Close(); err == nil {
			err = cerr
		}
	}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
		return fmt.Errorf("lossyproxy: goroutines still running %v after Close (a Filter blocking?)", closeTimeout)
	}
	return err
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// clientLoop reads the listening socket.
func (p *Proxy) clientLoop() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f, err := p.flowFor(from)
		if err != nil {
			p.count(ToServer, func(s *DirStats) {
				s.Received++
				s.ReceivedBytes += uint64(n)
				s.WriteErrors++
			})
			continue
		}
		if f == nil {
			return // closed
		}
		up := p.upstream(f)
		p.handle(ToServer, buf[:n], func(b []byte) error {
			_, err := up.WriteToUDPAddrPort(b, p.server)
			return err
		})
	}
}

// flowFor returns the flow for client, creating it (and its upstream socket
// and reader) on the first datagram. It returns nil, nil once closed.
func (p *Proxy) flowFor(client netip.AddrPort) (*flow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil
	}
	if f := p.flows[client]; f != nil {
		return f, nil
	}
	up, err := net.ListenUDP("udp", p.upLocal)
	if err != nil {
		return nil, err
	}
	f := &flow{client: client, up: up}
	p.flows[client] = f
	p.wg.Add(1)
	go p.serverLoop(f, up)
	return f, nil
}

// upstream returns the socket the flow's next datagram goes out on, moving
// the flow to a new one when Rebind says so.
func (p *Proxy) upstream(f *flow) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := f.sent
	f.sent++
	if p.cfg.Rebind == nil || p.closed || !p.cfg.Rebind(n) {
		return f.up
	}
	up, err := net.ListenUDP("udp", p.upLocal)
	if err != nil {
		return f.up
	}
	f.up.Close()
	f.up = up
	p.wg.Add(1)
	go p.serverLoop(f, up)
	return up
}

// serverLoop reads one of a flow's upstream sockets until it is closed.
func (p *Proxy) serverLoop(f *flow, up *net.UDPConn) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := up.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			continue
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != p.server {
			continue
		}
		p.handle(ToClient, buf[:n], func(b []byte) error {
			_, err := p.ln.WriteToUDPAddrPort(b, f.client)
			return err
		})
	}
}

func (p *Proxy) count(d Direction, f func(*DirStats)) {
	p.statsMu.Lock()
	f(&p.stats[d])
	p.statsMu.Unlock()
}

// decide returns whether to drop, duplicate and hold the next datagram of d.
func (p *Proxy) decide(d Direction, data []byte) (drop, dup, hold bool) {
	ds := &p.dirs[d]
	ds.mu.Lock()
	defer ds.mu.Unlock()
	n := ds.n
	ds.n++
	v := Default
	if p.cfg.Filter != nil {
		v = p.cfg.Filter(d, n, data)
	}
	switch v {
	case Pass:
		return false, false, false
	case Drop:
		return true, false, false
	}
	// Always three draws, so that decisions depend only on the index.
	r1, r2, r3 := ds.rng.Float64(), ds.rng.Float64(), ds.rng.Float64()
	if r1 < p.cfg.Drop {
		return true, false, false
	}
	return false, r2 < p.cfg.Duplicate, r3 < p.cfg.Reorder
}

// handle applies the impairments to one datagram and sends it with send.
func (p *Proxy) handle(d Direction, data []byte, send func([]byte) error) {
	size := uint64(len(data))
	p.count(d, func(s *DirStats) {
		s.Received++
		s.ReceivedBytes += size
	})
	drop, dup, hold := p.decide(d, data)
	if drop {
		p.count(d, func(s *DirStats) { s.Dropped++ })
		return
	}
	if p.cfg.Rewrite != nil {
		data = p.cfg.Rewrite(d, data)
	}
	copies := 1
	if dup {
		copies = 2
		p.count(d, func(s *DirStats) { s.Duplicated++ })
	}
	if !hold {
		p.sendCopies(d, data, copies, send)
		return
	}

	held := append([]byte(nil), data...)
	h := &heldDatagram{}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.count(d, func(s *DirStats) { s.Reordered++ })
	p.wg.Add(1)
	p.held[h] = struct{}{}
	h.t = time.AfterFunc(p.cfg.ReorderDelay, func() {
		defer p.wg.Done()
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		delete(p.held, h)
		p.mu.Unlock()
		p.sendCopies(d, held, copies, send)
	})
	p.mu.Unlock()
}

func (p *Proxy) sendCopies(d Direction, data []byte, copies int, send func([]byte) error) {
	for range copies {
		if err := send(data); err != nil {
			p.count(d, func(s *DirStats) { s.WriteErrors++ })
			continue
		}
		p.count(d, func(s *DirStats) {
			s.Forwarded++
			s.ForwardedBytes += uint64(len(data))
		})
	}
}
