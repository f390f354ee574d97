package dtls

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/pion/transport/v5/deadline"
)

// ConnectionState describes an established connection.
type ConnectionState struct {
	CipherSuite      CipherSuiteID
	Curve            CurveID // the ECDHE group of a full ECDHE handshake; 0 otherwise
	PeerCertificates []*x509.Certificate
	// PeerPublicKey is the peer's raw public key (RFC 7250, DER
	// SubjectPublicKeyInfo) when it authenticated with one.
	PeerPublicKey        []byte
	PSKIdentity          []byte // the identity the client used (PSK suites); after a failure, the one it claimed
	PSKIdentityHint      []byte // the hint the server sent, if any
	ServerName           string
	ExtendedMasterSecret bool
	// EncryptThenMAC reports a CBC suite's records protected
	// encrypt-then-MAC (RFC 7366) rather than MAC-then-encrypt.
	EncryptThenMAC bool
	SessionID      []byte

	// Resumed reports an abbreviated handshake.
	Resumed bool
	// Resumption is the mechanism by which this session can be (or was)
	// resumed: the negotiated type when both sides spoke the
	// session_resumption_type extension, else what RFC 5246/5077 set up.
	Resumption negotiation.Type
	// Negotiated reports that the peer answered the
	// session_resumption_type extension.
	Negotiated bool
	// ResumptionAttempted is the mechanism the client's ClientHello tried
	// to resume by (None when it asked for a fresh session): with Resumed,
	// it tells a hit from a miss.
	ResumptionAttempted negotiation.Type
	// ResumptionStateBytes is what this side keeps between connections to
	// resume the session: the client's cached session, or the server's
	// session-ID entry or client_state record. Tickets cost a server nothing
	// and client_state costs a client nothing.
	ResumptionStateBytes int

	// Handshake cost as seen by this side. A client counts its cookie
	// exchange; a server's counts start at the ClientHello that carried a
	// valid cookie, since the stateless exchange before it belongs to no
	// connection.
	// LocalCID and PeerCID are the connection IDs (RFC 9146) negotiated:
	// the one the peer puts in the records it sends here, and the one this
	// side puts in the records it sends. Both nil without the extension;
	// an empty one means "none needed".
	LocalCID, PeerCID []byte

	HandshakeDatagramsSent     int
	HandshakeDatagramsReceived int
	HandshakeBytesSent         int
	HandshakeBytesReceived     int
	HandshakeDuration          time.Duration
}

// Conn is a DTLS connection to one peer. It is a net.Conn whose Read and
// Write move whole datagrams of application data.
//
// An established Conn keeps its record layer, what ConnectionState
// reports and a byte-bounded queue of datagrams; everything only a
// handshake needs lives in the handshake's state value (hs) and is released
// when the handshake ends (docs/decisions.md, "Resource model").
type Conn struct {
	cfg      *Config
	isClient bool
	pconn    net.PacketConn
	addrMu   sync.RWMutex
	raddr    net.Addr // guarded by addrMu; read it with remote()
	// connected: pconn is a connected UDP socket of our own (Dial), which
	// reports ICMP errors such as port unreachable.
	connected bool
	in        inbox
	onClose   func()

	rl *recordLayer

	hsMu     sync.Mutex
	hsDone   atomic.Bool
	hsErr    error
	hsCtxErr error

	readMu  sync.Mutex
	writeMu sync.Mutex

	// hs is the running handshake's transport, nil outside a handshake.
	// It is owned by the handshake goroutine.
	hs *handshakeTransport
	// final is the last flight of the handshake when this side sent it,
	// kept to answer the peer's authenticated retransmission of its own
	// last flight until the peer shows it completed (docs/decisions.md,
	// "Resource model").
	final *finalFlight
	// first is the ClientHello a listener screened for this connection.
	first *firstHello
	// helloRandom is the random of the ClientHello a listener's
	// connection started with; another one from the same address is a new
	// handshake.
	helloRandom [32]byte
	// appData holds application records decrypted from a datagram beyond
	// the one Read returns.
	appData [][]byte
	readErr error

	// onMigrate, set by a Listener for a connection with a connection ID of
	// its own, moves the connection from one peer address to another in
	// the Listener's tables; false refuses the move. nextPeerSeq is one past
	// the newest authenticated record's sequence number.
	onMigrate   func(from, to net.Addr) bool
	nextPeerSeq uint64
	// reserveCID, set by a Listener, claims a CID of ours for routing;
	// false means another connection holds it.
	reserveCID func(cid []byte) bool
	// keyBlock and suite are the epoch-1 key material and its suite, kept
	// so that a server can save the connection for a graceful restart
	// (docs/decisions.md 49). saved marks one that was, which must not
	// send again from this process.
	keyBlock []byte
	suite    *cipherSuite
	saved    atomic.Bool
	cidKey   string // the CID reserveCID claimed; guarded by the Listener's mutex

	// unverified is set on a server connection whose peer has not shown it
	// is reachable at its address (no cookie); until an authenticated
	// record arrives, everything sent to it stays within the amplification
	// bound of the bytes received from it.
	unverified atomic.Bool
	ampRecv    atomic.Int64
	ampSent    atomic.Int64

	state ConnectionState
	stats struct {
		datagramsSent, datagramsReceived, bytesSent, bytesReceived atomic.Int64
	}

	closed        chan struct{}
	closeOnce     sync.Once
	readDeadline  *deadline.Deadline
	writeDeadline *deadline.Deadline
}

// finalFlight is the flight that ended a handshake, kept after it.
type finalFlight struct {
	items    []outItem
	peerNext uint16 // first message_seq the peer has not sent
	lastSend time.Time
}

// inbox is a connection's queue of received datagrams, bounded in bytes:
// a datagram that does not fit is dropped, as a congested network would.
type inbox struct {
	mu    sync.Mutex
	q     []inDatagram
	bytes int
	limit int
	ready chan struct{} // holds a token while q is not empty or err is new
	err   error         // a transport error the socket reported (ICMP)
}

// inDatagram is a received datagram and the address it came from.
type inDatagram struct {
	d    []byte
	from net.Addr
}

// fail records a transport error for the handshake to report.
func (b *inbox) fail(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// failure returns the transport error recorded, if any.
func (b *inbox) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *inbox) init(limit int) {
	b.limit = limit
	b.ready = make(chan struct{}, 1)
}

// push queues d, received from from, and reports whether it fit.
func (b *inbox) push(d []byte, from net.Addr) bool {
	b.mu.Lock()
	if b.bytes+len(d) > b.limit {
		b.mu.Unlock()
		return false
	}
	b.q = append(b.q, inDatagram{d, from})
	b.bytes += len(d)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
	return true
}

// pop returns the oldest queued datagram; the ready token stays while more
// are queued.
func (b *inbox) pop() (inDatagram, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) == 0 {
		return inDatagram{}, false
	}
	in := b.q[0]
	b.q[0] = inDatagram{}
	if b.q = b.q[1:]; len(b.q) == 0 {
		b.q = nil
	} else {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
	b.bytes -= len(in.d)
	return in, true
}

// drain discards everything queued.
func (b *inbox) drain() {
	b.mu.Lock()
	b.q, b.bytes = nil, 0
	b.mu.Unlock()
}

// deliver hands a datagram to the connection; it drops the datagram when
// the queue is full, as a congested network would, and reports whether it
// was queued.
func (c *Conn) deliver(d []byte, from net.Addr) bool {
	c.ampRecv.Add(int64(len(d)))
	return c.in.push(d, from)
}

// errAmplification is returned, never sent, when a datagram to an
// unverified address would exceed the amplification bound.
var errAmplification = errors.New("dtls: the peer's address is not verified and the datagram would exceed the amplification bound")

// fitsAmplificationBound reports whether resending items to an unverified
// peer stays within the bound.
func (c *Conn) fitsAmplificationBound(items []outItem) bool {
	n, err := flightSize(items, c.rl.write[1].overhead, c.cfg.mtu())
	return err == nil && float64(c.ampSent.Load()+int64(n)) <= c.cfg.amplificationFactor()*float64(c.ampRecv.Load())
}

func (c *Conn) writeDatagram(b []byte) error {
	if c.saved.Load() {
		// Saved for a restart: its sequence numbers belong to the copy
		// that will be restored.
		return net.ErrClosed
	}
	if c.unverified.Load() {
		// Until the address is verified, everything we send it stays
		// within AmplificationFactor times what it sent us, our
		// retransmissions included (docs/decisions.md, "Amplification").
		if float64(c.ampSent.Load()+int64(len(b))) > c.cfg.amplificationFactor()*float64(c.ampRecv.Load()) {
			c.cfg.noteLimit(LimitAmplification, c.remote())
			return errAmplification
		}
		c.ampSent.Add(int64(len(b)))
	}
	var err error
	if c.connected {
		_, err = c.pconn.(*net.UDPConn).Write(b)
	} else {
		_, err = c.pconn.WriteTo(b, c.remote())
	}
	if err != nil {
		return fmt.Errorf("dtls: write to %s: %w", c.remote(), err)
	}
	c.stats.datagramsSent.Add(1)
	c.stats.bytesSent.Add(int64(len(b)))
	return nil
}

// looksLikeFinished reports a protected handshake record of exactly the
// size of a Finished, in a datagram that also carries a ChangeCipherSpec:
// the peer's Finished as its flight sends it. Other undecryptable records
// are noise (or forgeries) and are only dropped.
func (c *Conn) looksLikeFinished(r *record) bool {
	if c.suite == nil {
		return false
	}
	n := c.suite.sealedLen(handshakeHeaderLen + 12)
	if r.contentType == recordCID {
		// The inner plaintext adds the real type and the peer's padding.
		return c.hs.datagramHasCCS && len(r.fragment) > n && len(r.fragment) <= c.suite.sealedLen(handshakeHeaderLen+12+1+255)
	}
	return c.hs.datagramHasCCS && r.contentType == recordHandshake && len(r.fragment) == n
}

// maxBadHandshakeRecords is how many protected records from the peer may
// fail authentication during a handshake before it is abandoned.
const maxBadHandshakeRecords = 3

var errKeysDiffer = errors.New("the peer's protected records do not authenticate: the two sides derived different keys (wrong PSK?)")

// errUnknownIdentityHidden ends a handshake whose client claimed a PSK
// identity the server does not know, answered as a wrong key.
var errUnknownIdentityHidden = errors.New("ClientKeyExchange: unknown PSK identity (answered as a wrong key, RFC 4279 §2)")

// maxEarlyRecords bounds the records kept while their epoch has no keys yet.
const maxEarlyRecords = 8

// handleDatagram processes every record of a datagram: handshake fragments
// go to the reassembler, application data to the read queue, alerts end the
// connection. Records that fail checks are dropped (RFC 6347 §4.1.2.7).
func (c *Conn) handleDatagram(d []byte, from net.Addr) {
	c.stats.datagramsReceived.Add(1)
	c.stats.bytesReceived.Add(int64(len(d)))
	records, err := parseRecordsCID(d, c.rl.cidLen)
	if err != nil {
		c.cfg.logger().Debug("dtls: dropping malformed record", "peer", c.remote().String(), "err", err)
	}
	if hs := c.hs; hs != nil {
		// A ChangeCipherSpec in the datagram marks the peer's own flight:
		// the Finished next to it is a real one, not a stray record.
		hs.datagramHasCCS = false
		for i := range records {
			hs.datagramHasCCS = hs.datagramHasCCS || records[i].contentType == recordChangeCipherSpec
		}
	}
	newest := false
	for i := range records {
		newest = c.handleRecord(&records[i]) || newest
	}
	if newest && from != nil && c.onMigrate != nil && from.String() != c.remote().String() {
		c.migrate(from, len(d))
	}
}

// migrate moves a server connection with a connection ID to the address
// its newest authenticated record came from (RFC 9146 §6). The new address
// has not shown it is reachable (the record may have been raced there), so
// it gets the amplification budget of any unverified address until another
// authenticated record arrives from it.
func (c *Conn) migrate(to net.Addr, received int) {
	from := c.remote()
	if !c.onMigrate(from, to) {
		return
	}
	c.addrMu.Lock()
	c.raddr = to
	c.addrMu.Unlock()
	c.ampSent.Store(0)
	c.ampRecv.Store(int64(received))
	c.unverified.Store(true)
	c.cfg.logger().Debug("dtls: peer moved (connection ID)", "from", from.String(), "to", to.String())
}

// handleRecord processes one record and reports whether it was an
// authenticated record newer than any before it.
func (c *Conn) handleRecord(r *record) (newest bool) {
	hs := c.hs
	if r.epoch == 1 && !c.rl.readKeysSet {
		// Only the peer's handshake records can be worth keeping: a
		// Finished that overtook our key derivation.
		if hs != nil && (r.contentType == recordHandshake || r.contentType == recordCID) && len(hs.early) < maxEarlyRecords {
			hs.early = append(hs.early, earlyRecord{raw: append([]byte(nil), r.raw...), withCCS: hs.datagramHasCCS})
		}
		return
	}
	if err := c.rl.open(r); err != nil {
		c.cfg.logger().Debug("dtls: dropping record", "peer", c.remote().String(), "epoch", r.epoch, "err", err)
		if hs != nil && errors.Is(err, errRecordMAC) && r.epoch == 1 && !hs.epoch1OK && c.looksLikeFinished(r) {
			// The peer's first protected records keep failing: its keys
			// differ from ours, which in practice is a wrong PSK. Say so
			// rather than wait for the handshake timeout; one stray
			// record is still only dropped.
			if hs.badRecords++; hs.badRecords >= maxBadHandshakeRecords {
				// decrypt_error, as RFC 4279 §2 answers both a wrong key
				// and an unknown identity.
				cause := errKeysDiffer
				if hs.unknownIdentity {
					cause = errUnknownIdentityHidden
				}
				c.setReadErr(localAlert(alertDecryptError, cause))
			}
		}
		return
	}
	if r.epoch == 1 {
		// An authenticated record: the peer holds the keys, so it is
		// reachable at this address.
		c.unverified.Store(false)
		if hs != nil {
			hs.epoch1OK = true
		}
		if r.seq >= c.nextPeerSeq {
			c.nextPeerSeq, newest = r.seq+1, true
		}
	}
	switch r.contentType {
	case recordHandshake:
		frags, err := parseHandshakeFragments(r.fragment)
		if err != nil {
			c.cfg.logger().Debug("dtls: dropping malformed handshake record", "peer", c.remote().String(), "err", err)
		}
		if hs == nil {
			c.postHandshakeRecord(frags, r.epoch)
			return
		}
		for _, f := range frags {
			if err := hs.reasm.add(f, r.epoch); errors.Is(err, errOldMessage) {
				hs.peerRetransmit = true
			} else if errors.Is(err, errHandshakeMemory) {
				c.cfg.noteLimit(LimitHandshakeMemory, c.remote())
			} else if err != nil {
				c.cfg.logger().Debug("dtls: dropping handshake fragment", "peer", c.remote().String(), "err", err)
			}
		}
	case recordChangeCipherSpec:
		if hs != nil && r.epoch == 0 && len(r.fragment) == 1 && r.fragment[0] == 1 {
			if !hs.peerCCS && c.cfg.Trace != nil {
				c.cfg.Trace(TraceEvent{Message: "ChangeCipherSpec", Length: 1})
			}
			hs.peerCCS = true
		}
	case recordAlert:
		if len(r.fragment) != 2 {
			return
		}
		if hs == nil && r.epoch == 0 {
			return // unauthenticated once keys are in use
		}
		level, desc := alertLevel(r.fragment[0]), alertDescription(r.fragment[1])
		switch {
		case desc == alertCloseNotify:
			c.setReadErr(io.EOF)
		case level == alertLevelFatal:
			c.setReadErr(&AlertError{Description: uint8(desc), Remote: true})
		}
	case recordApplicationData:
		if r.epoch != 1 {
			return
		}
		// The peer sends application data only after it completed the
		// handshake: our last flight has arrived.
		c.final = nil
		if len(c.appData) < maxQueuedRecords {
			c.appData = append(c.appData, r.fragment)
		}
	}
	return newest
}

// maxQueuedRecords bounds the application records decrypted from the
// datagrams of one Read.
const maxQueuedRecords = 64

func (c *Conn) setReadErr(err error) {
	if c.readErr == nil {
		c.readErr = err
	}
}

// postHandshakeRecord handles handshake fragments on an established
// connection. The peer's authenticated retransmission of its last flight
// (RFC 6347 §4.2.4) means it missed ours, which we resend; unauthenticated
// (epoch-0) fragments never make us send anything. This engine does not
// renegotiate: a server's HelloRequest is ignored and a client's
// renegotiating ClientHello gets no_renegotiation.
func (c *Conn) postHandshakeRecord(frags []handshakeFragment, epoch uint16) {
	if epoch != 1 {
		return
	}
	for _, f := range frags {
		switch {
		case c.final != nil && f.seq < c.final.peerNext:
			if time.Since(c.final.lastSend) >= c.cfg.retransmitInterval()/2 {
				c.final.lastSend = time.Now()
				_ = c.writeFlight(c.final.items)
			}
			return
		case !c.isClient && f.msgType == typeClientHello && f.offset == 0:
			_ = c.sendAlert(alertLevelWarning, alertNoRenegotiation)
			return
		}
	}
}

// installKeys sets the epoch-1 cipher and replays records that arrived
// before it.
func (c *Conn) installKeys(rc recordCipher, overhead int) {
	c.writeMu.Lock()
	c.rl.setKeys(rc, overhead)
	c.writeMu.Unlock()
	hs := c.hs
	early := hs.early
	hs.early = nil
	saved := hs.datagramHasCCS
	for _, e := range early {
		hs.datagramHasCCS = e.withCCS
		recs, _ := parseRecordsCID(e.raw, c.rl.cidLen)
		for i := range recs {
			c.handleRecord(&recs[i])
		}
	}
	hs.datagramHasCCS = saved
}

// earlyRecord is a record kept until its epoch's keys exist.
type earlyRecord struct {
	raw     []byte
	withCCS bool // its datagram carried a ChangeCipherSpec
}

// sendAlert sends an alert in the current write epoch.
func (c *Conn) sendAlert(level alertLevel, desc alertDescription) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	b, err := c.rl.seal(nil, recordAlert, c.rl.writeEpoch, []byte{byte(level), byte(desc)})
	if err != nil {
		return err
	}
	return c.writeDatagram(b)
}

// Handshake runs the handshake if it has not run yet, bounded by the
// Config's HandshakeTimeout.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the handshake if it has not run yet. Without a
// deadline in ctx, the Config's HandshakeTimeout applies.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.handshakeTimeout())
		defer cancel()
	}
	start := time.Now()
	var err error
	if c.isClient {
		err = c.clientHandshake(ctx)
	} else {
		err = c.serverHandshake(ctx)
	}
	c.state.HandshakeDuration = time.Since(start)
	c.state.HandshakeDatagramsSent += int(c.stats.datagramsSent.Load())
	c.state.HandshakeDatagramsReceived += int(c.stats.datagramsReceived.Load())
	c.state.HandshakeBytesSent += int(c.stats.bytesSent.Load())
	c.state.HandshakeBytesReceived += int(c.stats.bytesReceived.Load())
	if obs := c.cfg.HandshakeObserver; obs != nil {
		defer func() { obs(c.state, err) }()
	}
	if err != nil {
		var ae *AlertError
		if errors.As(err, &ae) && !ae.Remote {
			_ = c.sendAlert(alertLevelFatal, alertDescription(ae.Description))
		}
		stage := "waiting for a ClientHello with a cookie"
		if c.hs != nil {
			stage = c.hs.stage
		}
		err = &HandshakeError{Peer: c.remote().String(), Stage: stage, Err: err}
		c.hs = nil
		c.hsErr = err
		c.hsDone.Store(true)
		c.closeTransport()
		return err
	}
	if hs := c.hs; hs != nil && hs.sentLast {
		c.final = &finalFlight{items: hs.flight, peerNext: hs.reasm.next, lastSend: hs.lastSend}
	}
	// The handshake's state ends with it.
	c.hs = nil
	c.hsDone.Store(true)
	return nil
}

// ConnectionState returns what the handshake established.
func (c *Conn) ConnectionState() ConnectionState {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	return c.state
}

var errShortBuffer = errors.New("dtls: read buffer smaller than the record")

// Read reads one datagram of application data. A buffer too small for it
// returns an error and the datagram is lost.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if len(c.appData) > 0 {
			d := c.appData[0]
			if c.appData = c.appData[1:]; len(c.appData) == 0 {
				c.appData = nil
			}
			if len(d) > len(p) {
				return 0, errShortBuffer
			}
			return copy(p, d), nil
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		select {
		case <-c.in.ready:
			if in, ok := c.in.pop(); ok {
				c.handleDatagram(in.d, in.from)
			}
		case <-c.readDeadline.Done():
			return 0, &timeoutError{"read"}
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
}

// Write sends p as one application data record. It fails when p does not
// fit the MTU: DTLS does not split application data.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.writeDeadline.Done():
		return 0, &timeoutError{"write"}
	default:
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if n := recordHeaderLen + c.rl.write[1].overhead + len(p); n > c.cfg.mtu() {
		return 0, fmt.Errorf("dtls: write of %d bytes exceeds the MTU of %d (record would be %d bytes)", len(p), c.cfg.mtu(), n)
	}
	b, err := c.rl.seal(nil, recordApplicationData, 1, p)
	if err != nil {
		return 0, err
	}
	if err := c.writeDatagram(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends close_notify and releases the connection.
func (c *Conn) Close() error {
	if c.hsDone.Load() && c.hsErr == nil && !c.saved.Load() {
		_ = c.sendAlert(alertLevelWarning, alertCloseNotify)
	}
	c.closeTransport()
	return nil
}

func (c *Conn) closeTransport() {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.onClose != nil {
			c.onClose()
		}
	})
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.pconn.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote() }

// useCIDs installs negotiated connection IDs: ours in the records we
// receive, the peer's in those we send.
func (c *Conn) useCIDs(local, peer []byte) {
	c.writeMu.Lock()
	c.rl.readCID, c.rl.writeCID, c.rl.cidPadding, c.rl.cidLen = local, peer, c.cfg.CIDPadding, len(local)
	c.writeMu.Unlock()
	c.state.LocalCID, c.state.PeerCID = local, peer
}

// remote is the peer's address, which a server connection with a
// connection ID may move (RFC 9146 §6).
func (c *Conn) remote() net.Addr {
	c.addrMu.RLock()
	defer c.addrMu.RUnlock()
	return c.raddr
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDeadline.Set(t)
	c.writeDeadline.Set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { c.readDeadline.Set(t); return nil }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.writeDeadline.Set(t); return nil }

type timeoutError struct{ op string }

func (e *timeoutError) Error() string   { return "dtls: " + e.op + " deadline exceeded" }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Unwrap() error   { return ErrDeadlineExceeded }

// ErrDeadlineExceeded is wrapped by deadline errors of Read and Write.
var ErrDeadlineExceeded = errors.New("deadline exceeded")

var aLongTimeAgo = time.Unix(1, 0)
