package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
)

// Hostile configures traffic from source addresses that never prove they
// are reachable: they send and count what comes back, nothing more.
type Hostile struct {
	// HelloRate is the cookie-less ClientHellos sent per second, each
	// source sending HellosPerSource of them 100 ms apart; default 10,000.
	HelloRate float64
	// HellosPerSource is how many hellos one flooding source sends;
	// default 10.
	HellosPerSource int
	// Replays is the number of source addresses that replay the captured
	// resumption ClientHello, each followed by a fragment bomb; default
	// 1,000.
	Replays int
	// Linger is how long a source keeps counting what the server sends it
	// after its last datagram, long enough to see the server's
	// retransmissions; default 3 s.
	Linger time.Duration
	// Prelude is how long hostile traffic runs alone before the devices
	// start (the replays are sent during it); the server's memory growth
	// per hostile source is read at its end. Default 1 s.
	Prelude time.Duration
	// MaxSources bounds the hostile sockets open at once; a source that
	// would exceed it is skipped and counted. Default 8,192.
	MaxSources int
}

// AmplificationBound is what a source that never proved it is reachable
// may receive, as a multiple of what it sent (docs/decisions.md 36).
const AmplificationBound = 3

func (h *Hostile) defaults() {
	if h.HelloRate <= 0 {
		h.HelloRate = 10000
	}
	if h.HellosPerSource <= 0 {
		h.HellosPerSource = 10
	}
	if h.Replays <= 0 {
		h.Replays = 1000
	}
	if h.Linger <= 0 {
		h.Linger = 3 * time.Second
	}
	if h.Prelude <= 0 {
		h.Prelude = time.Second
	}
	if h.MaxSources <= 0 {
		h.MaxSources = 8192
	}
}

// SourceTally is what the hostile sources of one kind sent and got back.
type SourceTally struct {
	Sources   int
	Datagrams int
	BytesSent int64
	// BytesReceived counts everything the server sent to these sources
	// while they listened (retransmissions included).
	BytesReceived int64
	// MaxRatio is the largest bytes received / bytes sent of any one
	// source, and OverBound the sources above AmplificationBound.
	MaxRatio  float64
	OverBound int
}

// HostileResult reports the hostile traffic of a Run.
type HostileResult struct {
	// Hellos are the cookie-less ClientHellos from random sources.
	Hellos SourceTally
	// Replays are the replayed resumption ClientHellos, each followed by a
	// fragment bomb from the same source.
	Replays SourceTally
	// ReplayResumed and ReplayResumption say whether the captured hello
	// resumed a session when the real client sent it, and by which type.
	ReplayResumed    bool
	ReplayResumption string
	// Skipped counts sources not started because MaxSources were open.
	Skipped int
	// MaxRatio is the largest received/sent ratio of any hostile source.
	MaxRatio float64
	// LegitSuccessRate is the share of the measured devices that
	// succeeded while the hostile traffic ran.
	LegitSuccessRate float64
	// PreludeSources is the number of hostile sources started during the
	// prelude; with a server process, ServerRSSGrowth is its resident
	// memory growth over the prelude and RSSPerSource that divided by
	// PreludeSources.
	PreludeSources  int
	ServerRSSGrowth int64
	RSSPerSource    float64
}

// hostileRun is hostile traffic in progress.
type hostileRun struct {
	cfg    *Config
	h      *Hostile
	hello  []byte // a real client's first ClientHello: the flood's template
	replay []byte // a real client's resumption ClientHello
	bomb   []byte

	parent context.Context    // the run's: ends every source
	ctx    context.Context    // the flood's
	cancel context.CancelFunc // stops the flood
	wg     sync.WaitGroup     // every source
	flood  sync.WaitGroup     // the flood's spawner
	slots  chan struct{}
	once   sync.Once

	started atomic.Int64
	skipped atomic.Int64
	hellos  tally
	replays tally
	res     HostileResult
}

// startHostile captures a real client's hellos, then starts the flood and
// the replays and returns at the end of the prelude, with the flood still
// running until stop.
func startHostile(ctx context.Context, cfg *Config) (*hostileRun, error) {
	h := cfg.Hostile
	full, replay, st, err := capture(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("loadgen: capturing a resumption ClientHello: %w", err)
	}
	r := &hostileRun{cfg: cfg, h: h, hello: full, replay: replay, bomb: FragmentBomb(replay), slots: make(chan struct{}, h.MaxSources)}
	r.res.ReplayResumed = st.Resumed
	r.res.ReplayResumption = st.Resumption.String()
	r.parent = ctx
	r.ctx, r.cancel = context.WithCancel(ctx)

	before, err := cfg.serverUsage()
	if err != nil {
		return nil, err
	}
	r.flood.Add(1)
	go r.runFlood()
	// The replays go out over the first half of the prelude.
	spacing := h.Prelude / 2 / time.Duration(h.Replays)
	for i := 0; i < h.Replays && ctx.Err() == nil; i++ {
		r.spawn(&r.replays, func(s *source) {
			s.send(r.replay)
			sleep(r.ctx, 20*time.Millisecond)
			s.send(r.bomb)
		})
		time.Sleep(spacing)
	}
	sleep(ctx, h.Prelude/2)
	r.res.PreludeSources = int(r.started.Load())
	if cfg.ServerPID != 0 {
		after, err := cfg.serverUsage()
		if err != nil {
			r.stop()
			return nil, err
		}
		r.res.ServerRSSGrowth = after.RSS - before.RSS
		if r.res.PreludeSources > 0 {
			r.res.RSSPerSource = float64(r.res.ServerRSSGrowth) / float64(r.res.PreludeSources)
		}
	}
	return r, nil
}

func (cfg *Config) serverUsage() (Usage, error) {
	if cfg.ServerPID == 0 {
		return Usage{}, nil
	}
	return ReadUsage(cfg.ServerPID)
}

// runFlood starts flooding sources at HelloRate/HellosPerSource per second
// until the run's context ends.
func (r *hostileRun) runFlood() {
	defer r.flood.Done()
	perSource := r.h.HellosPerSource
	sourcesPerSecond := r.h.HelloRate / float64(perSource)
	start := time.Now()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	spawned := 0
	for {
		for due := int(time.Since(start).Seconds()*sourcesPerSecond) + 1; spawned < due; spawned++ {
			r.spawn(&r.hellos, func(s *source) {
				for k := 0; k < perSource; k++ {
					if k > 0 && !sleep(r.ctx, 100*time.Millisecond) {
						return
					}
					s.send(randomizeHello(r.hello))
				}
			})
		}
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
	}
}

// spawn runs one hostile source: a socket from a random address, send,
// then Linger of listening, then its tally.
func (r *hostileRun) spawn(t *tally, send func(*source)) {
	select {
	case r.slots <- struct{}{}:
	default:
		r.skipped.Add(1)
		return
	}
	s, err := openSource(r.cfg.Target)
	if err != nil {
		<-r.slots
		r.skipped.Add(1)
		return
	}
	r.started.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.slots }()
		send(s)
		// Linger even when the flood stops, so that late retransmissions
		// are counted; only the run's own end cuts it short.
		sleep(r.parent, r.h.Linger)
		t.add(s.finish())
	}()
}

// stop ends the flood, waits for every source to finish lingering and
// returns the tallies. Calling it again returns the same result.
func (r *hostileRun) stop() *HostileResult {
	r.once.Do(func() {
		r.cancel()
		r.flood.Wait()
		r.wg.Wait()
		r.res.Hellos = r.hellos.result()
		r.res.Replays = r.replays.result()
		r.res.Skipped = int(r.skipped.Load())
		r.res.MaxRatio = max(r.res.Hellos.MaxRatio, r.res.Replays.MaxRatio)
	})
	res := r.res
	return &res
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tally adds up sources; safe for concurrent use.
type tally struct {
	mu sync.Mutex
	t  SourceTally
}

func (t *tally) add(datagrams int, sent, received int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.t.Sources++
	t.t.Datagrams += datagrams
	t.t.BytesSent += sent
	t.t.BytesReceived += received
	if sent > 0 {
		ratio := float64(received) / float64(sent)
		t.t.MaxRatio = max(t.t.MaxRatio, ratio)
		if ratio > AmplificationBound {
			t.t.OverBound++
		}
	}
}

func (t *tally) result() SourceTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.t
}

// source is one hostile socket and what crossed it.
type source struct {
	conn       *net.UDPConn
	datagrams  int
	sent       int64
	received   atomic.Int64
	readerDone chan struct{}
}

// hostileIP is a random address in 127.128.0.0/9, apart from the devices'.
func hostileIP() net.IP {
	return net.IPv4(127, byte(128+mrand.IntN(127)), byte(mrand.IntN(256)), byte(1+mrand.IntN(254)))
}

func openSource(target *net.UDPAddr) (*source, error) {
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: hostileIP()}, target)
	if err != nil {
		return nil, err
	}
	s := &source{conn: c, readerDone: make(chan struct{})}
	go func() {
		defer close(s.readerDone)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // an ICMP error: listen on until finish closes the socket
			}
			s.received.Add(int64(n))
		}
	}()
	return s, nil
}

// send sends one datagram; only the sending goroutine calls it.
func (s *source) send(b []byte) {
	if n, err := s.conn.Write(b); err == nil {
		s.datagrams++
		s.sent += int64(n)
	}
}

// finish closes the socket and returns what crossed it.
func (s *source) finish() (datagrams int, sent, received int64) {
	s.conn.Close()
	<-s.readerDone
	return s.datagrams, s.sent, s.received.Load()
}

// Offsets in a datagram that starts with a ClientHello record.
const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12
	helloRandomAt      = recordHeaderLen + handshakeHeaderLen + 2 // after client_version
)

// isClientHello reports a datagram that starts with an epoch-0 handshake
// record carrying a ClientHello with room for its random.
func isClientHello(d []byte) bool {
	return len(d) >= helloRandomAt+32 && d[0] == 22 && d[3] == 0 && d[4] == 0 && d[recordHeaderLen] == 1
}

// randomizeHello returns a copy of the ClientHello datagram hello with a
// fresh random: a new handshake as far as the server can tell.
func randomizeHello(hello []byte) []byte {
	d := append([]byte(nil), hello...)
	_, _ = rand.Read(d[helloRandomAt : helloRandomAt+32])
	return d
}

// FragmentBomb returns one datagram of 16 epoch-0 handshake records, each
// a one-byte fragment (offset 0) of a different message (message_seq 1 to
// 16) that declares a length of 64 KiB: a server that reserves what a peer
// declares would set aside 1 MiB for 416 bytes. The record sequence
// numbers follow the one of hello, the ClientHello datagram it goes after.
func FragmentBomb(hello []byte) []byte {
	var seq uint64
	if len(hello) >= recordHeaderLen {
		seq = uint64(hello[5])<<40 | uint64(binary.BigEndian.Uint32(hello[6:10]))<<8 | uint64(hello[10])
	}
	const (
		fragments   = 16
		declared    = 64 * 1024
		typeCert    = 11 // certificate: the message that is legitimately large
		fragmentLen = 1
	)
	d := make([]byte, 0, fragments*(recordHeaderLen+handshakeHeaderLen+fragmentLen))
	for k := range fragments {
		s := seq + 1 + uint64(k)
		d = append(d, 22, 0xfe, 0xfd, 0, 0, // handshake, DTLS 1.2, epoch 0
			byte(s>>40), byte(s>>32), byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
		d = binary.BigEndian.AppendUint16(d, handshakeHeaderLen+fragmentLen)
		d = append(d, typeCert, byte(declared>>16), byte(declared>>8&0xff), byte(declared&0xff))
		d = binary.BigEndian.AppendUint16(d, uint16(1+k)) // message_seq
		d = append(d, 0, 0, 0)                            // fragment_offset
		d = append(d, 0, 0, fragmentLen)
		d = append(d, 0)
	}
	return d
}

// recordingConn remembers the first datagram written through it.
type recordingConn struct {
	*connectedConn
	mu    sync.Mutex
	first []byte
}

func (c *recordingConn) WriteTo(p []byte, a net.Addr) (int, error) {
	c.mu.Lock()
	if c.first == nil {
		c.first = append([]byte(nil), p...)
	}
	c.mu.Unlock()
	return c.connectedConn.WriteTo(p, a)
}

func (c *recordingConn) firstDatagram() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// captureIP is the capturing client's source address, apart from the
// devices' and the hostile sources'.
var captureIP = net.IPv4(127, 127, 0, 1)

// capture runs one real client, offering session_ticket, twice: a full
// handshake, then the resumption. It returns the first datagram of each
// (both cookie-less ClientHellos) and the second connection's state.
func capture(ctx context.Context, cfg *Config) (full, resume []byte, st dtls.ConnectionState, err error) {
	dc := cfg.baseDTLS()
	dc.Resumption = []negotiation.Type{negotiation.SessionTicket}
	dc.ClientSessionCache = dtls.NewLRUClientSessionCache(1)
	for round := range 2 {
		pc, err := dialFrom(captureIP, cfg.Target, nil)
		if err != nil {
			return nil, nil, st, err
		}
		rc := &recordingConn{connectedConn: pc}
		c, err := dtls.Client(rc, cfg.Target, dc)
		if err != nil {
			pc.Close()
			return nil, nil, st, err
		}
		hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
		err = c.HandshakeContext(hctx)
		cancel()
		st = c.ConnectionState()
		c.Close()
		pc.Close()
		if err != nil {
			return nil, nil, st, err
		}
		d := rc.firstDatagram()
		if !isClientHello(d) {
			return nil, nil, st, fmt.Errorf("the client's first datagram is not a ClientHello (% x...)", d[:min(len(d), 16)])
		}
		if round == 0 {
			full = d
		} else {
			resume = d
		}
	}
	return full, resume, st, nil
}
