package dtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/transport/v5/deadline"
)

// The constructors: listeners, server and client connections.

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
	jar, err := newCookieJar(cfg.cookieLifetime(), cfg.now)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		pconn:      pc,
		cfg:        cfg,
		cookies:    jar,
		conns:      make(map[string]*Conn),
		successors: make(map[string]*Conn),
		perIP:      make(map[string]int),
		accept:     make(chan *Conn, cfg.acceptBacklog()),
		lookups:    make(chan lookupJob, lookupQueue),
		pending:    make(map[string][32]byte),
		unverified: newUnverifiedResumptions(cfg.cookieLifetime()),
		cids:       make(map[string]*Conn),
		closed:     make(chan struct{}),
	}
	if cfg.ConnectionIDGenerator != nil {
		// Our CIDs have one length, which routing reads records by.
		l.cidLen = len(cfg.ConnectionIDGenerator())
	}
	l.serve()
	return l, nil
}

// serverConfig validates a server Config and returns a copy completed with
// what the server makes for itself: a self-signed ECDSA certificate when it
// has no credentials at all, a ticket key ring when tickets are on and none
// is shared, and the rate limiter of its limit log lines.
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
	c.limitLog = newLimitLogger()
	return &c, nil
}

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
	// A connected socket: the kernel reports an ICMP port unreachable as
	// ECONNREFUSED, so a dial to a closed port fails at once.
	pc, err := net.DialUDP(network, nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("dtls: dial %s: %w", raddr, err)
	}
	c := newConn(pc, raddr, cfg, true)
	c.connected = true
	c.startFeeder(true)
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newConn(pconn net.PacketConn, raddr net.Addr, cfg *Config, isClient bool) *Conn {
	c := &Conn{
		cfg:           cfg,
		isClient:      isClient,
		pconn:         pconn,
		raddr:         raddr,
		rl:            newRecordLayer(cfg.replayWindow()),
		closed:        make(chan struct{}),
		readDeadline:  deadline.New(),
		writeDeadline: deadline.New(),
	}
	c.in.init(cfg.maxInboundBytes())
	return c
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
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// An ICMP error on a connected socket: the handshake
				// reports it; an established connection reads on.
				c.in.fail(err)
				continue
			}
			if addr.String() != c.raddr.String() {
				continue
			}
			c.deliver(append([]byte(nil), buf[:n]...), addr)
		}
	}()
}
