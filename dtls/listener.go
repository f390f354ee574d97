package dtls

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Listener accepts DTLS connections on one UDP socket. It answers every
// ClientHello without a valid cookie statelessly and creates a connection
// only for a peer that returned a valid cookie or whose resumption it
// accepts within the amplification bound; the handshakes of many peers run
// concurrently, and Accept returns connections whose handshake is complete.
//
// A ClientHello's path: the read loop screens it statelessly (cookie,
// limits) → a lookup worker decides a cookie-less resumption → the server
// handshake (handshake_server.go, resumption_server.go) → the record layer.
// Every per-peer resource is bounded by the Config's limits
// (docs/decisions.md, "Resource model").
type Listener struct {
	pconn   net.PacketConn
	cfg     *Config
	cookies *cookieJar

	mu sync.Mutex
	// conns holds one association per address, handshaking or
	// established.
	conns map[string]*Conn
	// successors holds a handshake from an address that has an
	// association; it replaces that association only when it completes
	// (RFC 6347 §4.2.8).
	successors map[string]*Conn
	handshakes int            // running handshakes
	perIP      map[string]int // running handshakes per source IP
	pending    map[string][32]byte
	// cids routes records that carry a connection ID of ours (RFC 9146)
	// to their connection, whatever address they come from; cidLen is the
	// length of our CIDs (0: we take none).
	cids   map[string]*Conn
	cidLen int
	// unverified holds the sessions with a cookie-less resumption running
	// or recently failed.
	unverified *unverifiedResumptions
	accept     chan *Conn
	lookups    chan lookupJob
	closed     chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

// serve starts the listener's goroutines.
func (l *Listener) serve() {
	l.wg.Add(2 + lookupWorkers)
	go l.readLoop()
	go l.rotateCookies()
	for i := 0; i < lookupWorkers; i++ {
		go l.lookupWorker()
	}
}

// rotateCookies changes the cookie secret on a timer, whether or not
// cookies are being made.
func (l *Listener) rotateCookies() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.cookieRotation())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.cookies.rotate()
		case <-l.closed:
			return
		}
	}
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
		l.route(addr, buf[:n])
	}
}

// route hands a datagram to its association, or screens it as a new
// ClientHello. d is the read loop's buffer: whatever keeps it copies it.
func (l *Listener) route(addr net.Addr, d []byte) {
	if l.cidLen > 0 && len(d) >= recordHeaderLen+l.cidLen && d[0] == recordCID {
		// A record with our CID goes to its connection even from a new
		// address (a NAT rebinding); the connection moves only once a
		// record from there authenticates as its newest.
		l.mu.Lock()
		c := l.cids[string(d[11:11+l.cidLen])]
		l.mu.Unlock()
		if c != nil {
			l.deliver(c, bytes.Clone(d), addr)
		}
		return
	}
	key := addr.String()
	l.mu.Lock()
	conn, succ := l.conns[key], l.successors[key]
	l.mu.Unlock()
	if !isInitialClientHello(d) {
		// Records of an association; while a successor handshakes, both
		// see them and each drops what its keys do not authenticate.
		if conn != nil {
			l.deliver(conn, bytes.Clone(d), addr)
		}
		if succ != nil {
			l.deliver(succ, bytes.Clone(d), addr)
		}
		return
	}
	// A retransmission of the hello that started a running handshake.
	for _, c := range []*Conn{succ, conn} {
		if c != nil && !c.hsDone.Load() && c.sameHello(d) {
			l.deliver(c, bytes.Clone(d), addr)
			return
		}
	}
	hello, msg, cookieOK := screenClientHello(d, key, l.cookies)
	if hello == nil {
		return
	}
	for _, c := range []*Conn{succ, conn} {
		if cookieOK && c != nil && c.helloRandom == hello.random {
			return // a late copy of the hello that made this connection
		}
	}
	first := &firstHello{info: parseClientHelloInfo(l.cfg, hello), msg: msg, size: len(d), verified: cookieOK}
	if cookieOK {
		l.begin(addr, key, first)
		return
	}
	// A peer with a live association must show it is reachable with a
	// cookie before a new handshake may replace it (RFC 6347 §4.2.8).
	if conn != nil || l.cfg.ResumptionCookie == CookieAlways || !first.info.asksToResume() ||
		l.unverified.blocked(first.info.resumptionKey(), l.cfg.now()) || l.atHandshakeLimit(addr) {
		l.sendHelloVerifyRequest(addr, key, first)
		return
	}
	// Whether the session resumes may take a store lookup: the lookup
	// workers decide, so that a slow store never stalls this loop. When
	// they are all busy the peer just gets a cookie.
	l.mu.Lock()
	if pending, queued := l.pending[key]; queued && pending == hello.random {
		l.mu.Unlock()
		return
	}
	select {
	case l.lookups <- lookupJob{addr: addr, key: key, first: first}:
		l.pending[key] = hello.random
		l.mu.Unlock()
	default:
		l.mu.Unlock()
		l.sendHelloVerifyRequest(addr, key, first)
	}
}

// deliver queues a datagram on a connection, noting a full queue.
func (l *Listener) deliver(c *Conn, d []byte, from net.Addr) {
	if !c.deliver(d, from) {
		l.cfg.noteLimit(LimitInboundBytes, c.remote())
	}
}

func (l *Listener) sendHelloVerifyRequest(addr net.Addr, key string, first *firstHello) {
	if _, err := l.pconn.WriteTo(helloVerifyRequest(key, first.info.hello, first.msg, l.cookies), addr); err != nil {
		l.cfg.logger().Debug("dtls: sending HelloVerifyRequest", "peer", key, "err", err)
	}
}

// atHandshakeLimit reports, for a hello that would start a handshake,
// whether a limit stands in its way; it notes the limit.
func (l *Listener) atHandshakeLimit(addr net.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limitLocked(addr) != ""
}

// limitLocked is the limit a new handshake from addr would exceed, or "".
func (l *Listener) limitLocked(addr net.Addr) Limit {
	var lim Limit
	switch {
	case len(l.conns)+len(l.successors) >= l.cfg.maxConnections():
		lim = LimitConnections
	case l.handshakes >= l.cfg.maxHandshakes():
		lim = LimitHandshakes
	case l.perIP[ipOf(addr)] >= l.cfg.maxHandshakesPerIP():
		lim = LimitHandshakesPerIP
	default:
		return ""
	}
	l.cfg.noteLimit(lim, addr)
	return lim
}

func ipOf(addr net.Addr) string {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return string(ua.IP.To16())
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
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
			// One cookie-less resumption per session at a time: the
			// rest are replays until they prove their address.
			skip = skip && l.unverified.start(job.first.info.resumptionKey(), l.cfg.now())
			l.mu.Lock()
			if l.pending[job.key] == job.first.info.hello.random {
				delete(l.pending, job.key)
			}
			l.mu.Unlock()
			if skip {
				if !l.begin(job.addr, job.key, job.first) {
					l.unverified.end(job.first.info.resumptionKey(), true, l.cfg.now())
				}
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

// isInitialClientHello reports a plaintext epoch-0 handshake record
// carrying a ClientHello, the only thing a peer that lost its association
// can send.
func isInitialClientHello(d []byte) bool {
	return len(d) > recordHeaderLen+handshakeHeaderLen && d[0] == recordHandshake && d[3] == 0 && d[4] == 0 &&
		d[recordHeaderLen] == typeClientHello
}

// begin starts the handshake of a ClientHello that passed the cookie check
// or may skip it, unless a limit stands in its way: then a peer without a
// cookie gets a HelloVerifyRequest and one with a cookie is dropped (it
// retransmits on its own timer). A hello without a cookie never displaces
// an association, and one with a cookie only becomes a successor that
// replaces the association when its handshake completes. It reports whether
// the handshake started.
func (l *Listener) begin(addr net.Addr, key string, first *firstHello) bool {
	c := newConn(l.pconn, addr, l.cfg, false)
	c.first = first
	c.helloRandom = first.info.hello.random
	// The server's counts start at the ClientHello that carried a valid
	// cookie; the stateless exchange before it belongs to no connection.
	c.stats.datagramsReceived.Add(1)
	c.stats.bytesReceived.Add(int64(first.size))
	c.ampRecv.Add(int64(first.size))
	c.unverified.Store(!first.verified)
	ip := ipOf(addr)
	c.onClose = func() { l.forget(key, c) }
	if l.cidLen > 0 {
		c.reserveCID = func(cid []byte) bool { return l.reserveCID(c, cid) }
		c.onMigrate = func(from, to net.Addr) bool { return l.migrate(c, from, to) }
	}

	l.mu.Lock()
	old, oldSucc := l.conns[key], l.successors[key]
	switch {
	case old != nil && old.helloRandom == c.helloRandom, oldSucc != nil && oldSucc.helloRandom == c.helloRandom:
		l.mu.Unlock()
		return false // a copy of the hello whose connection exists
	case old != nil && !first.verified:
		// A lookup that ended after a connection was made from this
		// address never replaces it.
		l.mu.Unlock()
		l.sendHelloVerifyRequest(addr, key, first)
		return false
	}
	if lim := l.limitLocked(addr); lim != "" {
		l.mu.Unlock()
		if !first.verified {
			l.sendHelloVerifyRequest(addr, key, first)
		}
		return false
	}
	if old != nil {
		l.successors[key] = c
	} else {
		l.conns[key] = c
	}
	l.handshakes++
	l.perIP[ip]++
	l.mu.Unlock()
	if oldSucc != nil {
		oldSucc.closeTransport() // a newer verified hello supersedes it
	}

	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.handshakeTimeoutFor(first.verified))
		err := c.HandshakeContext(ctx)
		cancel()
		if !first.verified {
			l.unverified.end(first.info.resumptionKey(), err == nil, l.cfg.now())
		}
		l.mu.Lock()
		l.handshakes--
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
		var replaced *Conn
		if err == nil && l.successors[key] == c {
			// The peer started over and proved it: the new association
			// replaces the old one now (RFC 6347 §4.2.8).
			replaced = l.conns[key]
			l.conns[key] = c
			delete(l.successors, key)
		}
		l.mu.Unlock()
		if replaced != nil {
			replaced.closeTransport()
		}
		if err != nil {
			l.cfg.logger().Debug("dtls: handshake failed", "peer", key, "err", err)
			return
		}
		select {
		case l.accept <- c:
		default:
			// Never park a finished handshake: the application is not
			// accepting, so the newcomer is turned away.
			l.cfg.noteLimit(LimitAcceptBacklog, addr)
			c.Close()
		}
	}()
	return true
}

// forget removes a closed connection from the listener's tables, under
// the address it started from and the one it may have moved to.
func (l *Listener) forget(key string, c *Conn) {
	now := c.remote().String()
	l.mu.Lock()
	for _, k := range []string{key, now} {
		if l.conns[k] == c {
			delete(l.conns, k)
		}
		if l.successors[k] == c {
			delete(l.successors, k)
		}
	}
	if l.cids[c.cidKey] == c {
		delete(l.cids, c.cidKey)
	}
	l.mu.Unlock()
}

// reserveCID claims cid for c's records; false when another connection
// holds it or its length is not the listener's.
func (l *Listener) reserveCID(c *Conn, cid []byte) bool {
	if len(cid) != l.cidLen {
		l.cfg.logger().Warn("dtls: ConnectionIDGenerator made a CID of another length; not used", "want", l.cidLen, "got", len(cid))
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if other := l.cids[string(cid)]; other != nil && other != c {
		return false
	}
	if l.cids[c.cidKey] == c {
		delete(l.cids, c.cidKey) // a CID it claimed before and gave up
	}
	c.cidKey = string(cid)
	l.cids[c.cidKey] = c
	return true
}

// migrate moves c from one address to another in the listener's tables,
// unless another association holds the new address.
func (l *Listener) migrate(c *Conn, from, to net.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if other := l.conns[to.String()]; other != nil && other != c {
		return false
	}
	if l.conns[from.String()] == c {
		delete(l.conns, from.String())
	}
	l.conns[to.String()] = c
	return true
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
		return nil, errListenerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// errListenerClosed is what Accept returns once the Listener is closed. It
// is net.ErrClosed, as for any closed net.Listener, and io.EOF, which is
// how go-coap's servers recognise a closed listener and stop serving
// instead of retrying Accept.
var errListenerClosed error = listenerClosedError{}

type listenerClosedError struct{}

func (listenerClosedError) Error() string { return "dtls: listener closed" }

func (listenerClosedError) Is(target error) bool { return target == net.ErrClosed || target == io.EOF }

// Close stops the listener and closes its socket and every connection on it.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		l.mu.Lock()
		conns := make([]*Conn, 0, len(l.conns)+len(l.successors))
		for _, c := range l.conns {
			conns = append(conns, c)
		}
		for _, c := range l.successors {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		err = l.pconn.Close()
		l.wg.Wait()
		for {
			select {
			case c := <-l.accept:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

// Addr returns the listener's local address.
func (l *Listener) Addr() net.Addr { return l.pconn.LocalAddr() }

// ListenerStats is a snapshot of a Listener's associations.
type ListenerStats struct {
	Connections int // associations, handshaking or established, successors included
	Handshakes  int // handshakes running
}

// Stats returns the listener's current counts.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ListenerStats{Connections: len(l.conns) + len(l.successors), Handshakes: l.handshakes}
}
