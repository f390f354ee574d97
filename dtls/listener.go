package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

// Listener accepts DTLS connections on one UDP socket. It answers every
// ClientHello without a valid cookie statelessly and creates a connection
// only for a peer that returned a valid cookie; the handshakes of many peers
// run concurrently, and Accept returns connections whose handshake is
// complete.
type Listener struct {
	pconn   net.PacketConn
	cfg     *Config
	cookies *cookieJar

	mu      sync.Mutex
	conns   map[string]*Conn
	pending map[string][32]byte // addresses with a queued lookup, and their hello's random
	accept  chan *Conn
	lookups chan lookupJob
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// Listen creates a Listener on a new UDP socket.
func Listen(network string, laddr *net.UDPAddr, cfg *Config) (*Listener, error) {
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("dtls: listen: %w", err)
	}
	l, err := NewListener(pc, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return l, nil
}

// NewListener serves DTLS on an existing packet socket; the Listener owns it
// from then on.
func NewListener(pc net.PacketConn, cfg *Config) (*Listener, error) {
	cfg, err := serverConfig(cfg)
	if err != nil {
		return nil, err
	}
	rotation := cfg.CookieRotation
	if rotation <= 0 {
		rotation = defaultCookieRotation
	}
	jar, err := newCookieJar(rotation, cfg.now)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		pconn:   pc,
		cfg:     cfg,
		cookies: jar,
		conns:   make(map[string]*Conn),
		accept:  make(chan *Conn, 16),
		lookups: make(chan lookupJob, lookupQueue),
		pending: make(map[string][32]byte),
		closed:  make(chan struct{}),
	}
	l.wg.Add(1 + lookupWorkers)
	go l.readLoop()
	for i := 0; i < lookupWorkers; i++ {
		go l.lookupWorker()
	}
	return l, nil
}

// serverConfig validates a server Config and gives a server with no
// credentials at all a self-signed ECDSA certificate.
// serverConfig validates a server Config and returns a copy completed with
// what the server makes for itself: a self-signed ECDSA certificate when it
// has no credentials at all, and a ticket key ring when tickets are on and
// none is shared.
func serverConfig(cfg *Config) (*Config, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	if c.PSK == nil && len(c.Certificates) == 0 {
		cert, err := selfsign.GenerateSelfSigned()
		if err != nil {
			return nil, fmt.Errorf("dtls: generating a self-signed certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if c.TicketKeys == nil && !c.SessionTicketsDisabled {
		ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{TicketLifetime: c.sessionLifetime(), Now: c.now})
		if err != nil {
			return nil, fmt.Errorf("dtls: ticket keys: %w", err)
		}
		c.TicketKeys = ring
	}
	if err := c.validate(false); err != nil {
		return nil, err
	}
	return &c, nil
}

func (l *Listener) readLoop() {
	defer l.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, addr, err := l.pconn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.closed:
				return
			default:
			}
			l.cfg.logger().Warn("dtls: listener read", "err", err)
			continue
		}
		d := buf[:n]
		key := addr.String()
		l.mu.Lock()
		conn := l.conns[key]
		l.mu.Unlock()
		if conn != nil && !(isInitialClientHello(d) && (conn.hsDone.Load() || !conn.sameHello(d))) {
			conn.deliver(append([]byte(nil), d...))
			continue
		}
		hello, msg, cookieOK := screenClientHello(d, key, l.cookies)
		if hello == nil {
			continue
		}
		first := &firstHello{hello: hello, msg: msg, size: len(d)}
		if conn != nil && conn.helloRandom == hello.random {
			continue // a late copy of the hello that made this connection
		}
		if cookieOK {
			l.begin(addr, key, first)
			continue
		}
		// A peer with a live association must show it is reachable with a
		// cookie before a new handshake replaces it (RFC 6347 §4.2.8).
		if conn != nil || l.cfg.ResumptionCookie == CookieAlways || !asksToResume(l.cfg, hello) {
			l.sendHelloVerifyRequest(addr, key, first)
			continue
		}
		// Whether the session resumes may take a store lookup: the
		// lookup workers decide, so that a slow store never stalls this
		// loop. When they are all busy the peer just gets a cookie.
		l.mu.Lock()
		pending, queued := l.pending[key]
		if !queued || pending != hello.random {
			select {
			case l.lookups <- lookupJob{addr: addr, key: key, first: first}:
				l.pending[key] = hello.random
			default:
				l.mu.Unlock()
				l.sendHelloVerifyRequest(addr, key, first)
				continue
			}
		}
		l.mu.Unlock()
	}
}

func (l *Listener) sendHelloVerifyRequest(addr net.Addr, key string, first *firstHello) {
	if _, err := l.pconn.WriteTo(helloVerifyRequest(key, first.hello, first.msg, l.cookies), addr); err != nil {
		l.cfg.logger().Debug("dtls: sending HelloVerifyRequest", "peer", key, "err", err)
	}
}

// begin starts the handshake of a ClientHello that passed the cookie check
// or may skip it.
func (l *Listener) begin(addr net.Addr, key string, first *firstHello) {
	l.startHandshake(addr, key, first)
}

// asksToResume reports a ClientHello that offers a ticket, a session ID
// or a client_state resumption.
func asksToResume(cfg *Config, hello *clientHelloMsg) bool {
	if t, ok := findExtension(hello.extensions, extSessionTicket); ok && len(t) > 0 {
		return true
	}
	if offer, err := cfg.clientOffer(hello); err == nil && offer != nil && offer.Resume {
		return true
	}
	return len(hello.sessionID) > 0
}

// lookupJob is a cookie-less ClientHello waiting for its resumption lookup.
type lookupJob struct {
	addr  net.Addr
	key   string
	first *firstHello
}

const (
	// lookupWorkers and lookupQueue bound the state the listener spends
	// on peers that have not returned a cookie.
	lookupWorkers = 4
	lookupQueue   = 64
	// resumptionLookupTimeout bounds one pre-cookie lookup.
	resumptionLookupTimeout = 250 * time.Millisecond
)

func (l *Listener) lookupWorker() {
	defer l.wg.Done()
	for {
		select {
		case job := <-l.lookups:
			ctx, cancel := context.WithTimeout(context.Background(), resumptionLookupTimeout)
			skip := l.cfg.skipCookie(ctx, job.first)
			cancel()
			l.mu.Lock()
			if l.pending[job.key] == job.first.hello.random {
				delete(l.pending, job.key)
			}
			l.mu.Unlock()
			if skip {
				l.begin(job.addr, job.key, job.first)
			} else {
				l.sendHelloVerifyRequest(job.addr, job.key, job.first)
			}
		case <-l.closed:
			return
		}
	}
}

// sameHello reports whether d carries the ClientHello (same random) that
// started c's handshake: a retransmission, not a new handshake.
func (c *Conn) sameHello(d []byte) bool {
	const at = recordHeaderLen + handshakeHeaderLen + 2
	return len(d) >= at+32 && bytes.Equal(d[at:at+32], c.helloRandom[:])
}

// isInitialClientHello reports a plaintext epoch-0 handshake record, the
// only thing a peer that lost its association can send.
func isInitialClientHello(d []byte) bool {
	return len(d) > recordHeaderLen+handshakeHeaderLen && d[0] == recordHandshake && d[3] == 0 && d[4] == 0 &&
		d[recordHeaderLen] == typeClientHello
}

func (l *Listener) startHandshake(addr net.Addr, key string, first *firstHello) {
	c := newConn(l.pconn, addr, l.cfg, false)
	c.first = first
	c.helloRandom = first.hello.random
	// The server's counts start at the ClientHello that carried a valid
	// cookie; the stateless exchange before it belongs to no connection.
	c.stats.datagramsReceived.Add(1)
	c.stats.bytesReceived.Add(int64(first.size))
	c.onClose = func() {
		l.mu.Lock()
		if l.conns[key] == c {
			delete(l.conns, key)
		}
		l.mu.Unlock()
	}
	// Check and register under one lock: copies of one hello may reach
	// here from the read loop and the lookup workers at once.
	l.mu.Lock()
	if old := l.conns[key]; old != nil {
		if old.helloRandom == first.hello.random {
			l.mu.Unlock()
			return // a copy of the hello whose connection exists
		}
		// A peer with a live association starts over (it rebooted): the
		// cookie, or the server's own acceptance of its resumption, shows
		// it is reachable at this address.
		go old.Close()
	}
	l.conns[key] = c
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := c.HandshakeContext(context.Background()); err != nil {
			l.cfg.logger().Debug("dtls: handshake failed", "peer", key, "err", err)
			return
		}
		select {
		case l.accept <- c:
		case <-l.closed:
			c.Close()
		}
	}()
}

// Accept waits for the next connection whose handshake completed.
func (l *Listener) Accept() (net.Conn, error) {
	return l.AcceptWithContext(context.Background())
}

// AcceptWithContext is Accept bounded by ctx.
func (l *Listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the listener and closes its socket and every connection on it.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		l.mu.Lock()
		conns := make([]*Conn, 0, len(l.conns))
		for _, c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		err = l.pconn.Close()
		l.wg.Wait()
	})
	return err
}

// Addr returns the listener's local address.
func (l *Listener) Addr() net.Addr { return l.pconn.LocalAddr() }

// setReadErrAsync ends a connection whose peer started over; it is called
// from the listener goroutine, so it only closes.
func (c *Conn) setReadErrAsync() { c.closeTransport() }

// Server runs the server side of a handshake with one peer on pconn, which
// it reads from exclusively. The handshake starts on first use or
// HandshakeContext, and includes the cookie exchange.
func Server(pconn net.PacketConn, raddr net.Addr, cfg *Config) (*Conn, error) {
	cfg, err := serverConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := newConn(pconn, raddr, cfg, false)
	c.startFeeder(false)
	return c, nil
}

// Client prepares the client side of a connection to raddr over pconn,
// which it reads from exclusively. The handshake starts on first use or
// HandshakeContext.
func Client(pconn net.PacketConn, raddr net.Addr, cfg *Config) (*Conn, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	c := newConn(pconn, raddr, cfg, true)
	c.startFeeder(false)
	return c, nil
}

// Dial opens a UDP socket to raddr and completes a handshake, bounded by
// the Config's HandshakeTimeout.
func Dial(network string, raddr *net.UDPAddr, cfg *Config) (*Conn, error) {
	return DialContext(context.Background(), network, raddr, cfg)
}

// DialContext is Dial bounded by ctx.
func DialContext(ctx context.Context, network string, raddr *net.UDPAddr, cfg *Config) (*Conn, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("dtls: dial %s: %w", raddr, err)
	}
	c := newConn(pc, raddr, cfg, true)
	c.startFeeder(true)
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startFeeder reads datagrams from the peer into the connection. When the
// Conn owns the socket it closes it on Close; otherwise Close ends the
// feeder through a read deadline.
func (c *Conn) startFeeder(owned bool) {
	done := make(chan struct{})
	c.onClose = func() {
		if owned {
			c.pconn.Close()
		} else {
			_ = c.pconn.SetReadDeadline(aLongTimeAgo)
		}
		<-done
	}
	// The Conn reads the socket alone from now on and keeps deadlines of
	// its own; a deadline the caller left on the socket would make the
	// feeder spin on timeouts.
	_ = c.pconn.SetReadDeadline(time.Time{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*1024)
		for {
			n, addr, err := c.pconn.ReadFrom(buf)
			if err != nil {
				select {
				case <-c.closed:
					return
				default:
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			if addr.String() != c.raddr.String() {
				continue
			}
			c.deliver(append([]byte(nil), buf[:n]...))
		}
	}()
}
