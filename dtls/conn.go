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
	CipherSuite          CipherSuiteID
	PeerCertificates     []*x509.Certificate
	PSKIdentity          []byte // the identity the client used (PSK suites)
	PSKIdentityHint      []byte // the hint the server sent, if any
	ServerName           string
	ExtendedMasterSecret bool
	SessionID            []byte

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
	HandshakeDatagramsSent     int
	HandshakeDatagramsReceived int
	HandshakeBytesSent         int
	HandshakeBytesReceived     int
	HandshakeDuration          time.Duration
}

// Conn is a DTLS connection to one peer. It is a net.Conn whose Read and
// Write move whole datagrams of application data.
type Conn struct {
	cfg      *Config
	isClient bool
	pconn    net.PacketConn
	raddr    net.Addr
	inbound  chan []byte
	onClose  func()

	rl *recordLayer

	hsMu     sync.Mutex
	hsDone   atomic.Bool
	hsErr    error
	hsCtxErr error

	readMu  sync.Mutex
	writeMu sync.Mutex

	// handshake transport, owned by the handshake and then by Read
	reasm          reassembler
	sendSeq        uint16
	lastFlight     []outItem
	lastSend       time.Time
	peerRetransmit bool
	peerCCS        bool
	early          []earlyRecord // epoch-1 records that came before their keys
	first          *firstHello
	// noClientStateResume: the retry after a client_state ticket that did
	// not work asks for a fresh session.
	noClientStateResume bool
	// helloRandom is the random of the ClientHello a listener's
	// connection started with; another one from the same address is a new
	// handshake.
	helloRandom [32]byte
	// badRecords counts epoch-1 records that failed authentication before
	// any succeeded, during the handshake.
	badRecords     int
	epoch1OK       bool
	datagramHasCCS bool // server: the ClientHello whose cookie was checked
	transcript     []byte
	appData        [][]byte
	readErr        error

	state ConnectionState
	stats struct {
		datagramsSent, datagramsReceived, bytesSent, bytesReceived atomic.Int64
	}

	closed        chan struct{}
	closeOnce     sync.Once
	readDeadline  *deadline.Deadline
	writeDeadline *deadline.Deadline
}

const inboundQueue = 64

func newConn(pconn net.PacketConn, raddr net.Addr, cfg *Config, isClient bool) *Conn {
	return &Conn{
		cfg:           cfg,
		isClient:      isClient,
		pconn:         pconn,
		raddr:         raddr,
		inbound:       make(chan []byte, inboundQueue),
		rl:            newRecordLayer(cfg.replayWindow()),
		closed:        make(chan struct{}),
		readDeadline:  deadline.New(),
		writeDeadline: deadline.New(),
	}
}

// deliver hands a datagram to the connection; it drops the datagram when the
// queue is full, as a congested network would.
func (c *Conn) deliver(d []byte) {
	select {
	case c.inbound <- d:
	default:
	}
}

func (c *Conn) writeDatagram(b []byte) error {
	if _, err := c.pconn.WriteTo(b, c.raddr); err != nil {
		return fmt.Errorf("dtls: write to %s: %w", c.raddr, err)
	}
	c.stats.datagramsSent.Add(1)
	c.stats.bytesSent.Add(int64(len(b)))
	return nil
}

// sendFlight packs and sends a flight and keeps it for retransmission.
func (c *Conn) sendFlight(items []outItem) error {
	c.lastFlight = items
	return c.resendFlight()
}

func (c *Conn) resendFlight() error {
	if c.lastFlight == nil {
		return nil
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	datagrams, err := packFlight(c.rl, c.lastFlight, c.cfg.mtu())
	if err != nil {
		return err
	}
	for _, d := range datagrams {
		if err := c.writeDatagram(d); err != nil {
			return err
		}
	}
	c.lastSend = time.Now()
	return nil
}

// handshakeItem queues a handshake message of ours: it gets the next
// message_seq and enters the transcript.
func (c *Conn) handshakeItem(m handshakeMessage, epoch uint16) (outItem, error) {
	body, err := m.marshal()
	if err != nil {
		return outItem{}, localAlert(alertInternalError, err)
	}
	it := outItem{epoch: epoch, msgType: m.typ(), seq: c.sendSeq, body: body}
	c.sendSeq++
	return it, nil
}

func (c *Conn) addTranscript(msgType uint8, seq uint16, body []byte) {
	c.transcript = append(c.transcript, fullHandshakeMessage(msgType, seq, body)...)
}

// errHandshakeTimeout ends a handshake whose peer stopped answering.
var errHandshakeTimeout = errors.New("dtls: handshake timed out")

// readHandshake returns the next handshake message in order, retransmitting
// the last flight whenever its timer fires or the peer repeats its own
// flight.
func (c *Conn) readHandshake(ctx context.Context) (handshakeMsg, error) {
	interval := c.cfg.retransmitInterval()
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		if m, ok := c.reasm.pop(); ok {
			return m, nil
		}
		if c.readErr != nil {
			return handshakeMsg{}, c.readErr
		}
		if c.peerRetransmit {
			c.peerRetransmit = false
			if time.Since(c.lastSend) >= c.cfg.retransmitInterval()/2 {
				if err := c.resendFlight(); err != nil {
					return handshakeMsg{}, err
				}
			}
		}
		select {
		case d := <-c.inbound:
			c.handleDatagram(d)
		case <-timer.C:
			if err := c.resendFlight(); err != nil {
				return handshakeMsg{}, err
			}
			interval = min(interval*2, c.cfg.retransmitMax())
			timer.Reset(interval)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return handshakeMsg{}, errHandshakeTimeout
			}
			return handshakeMsg{}, ctx.Err()
		case <-c.closed:
			return handshakeMsg{}, net.ErrClosed
		}
	}
}

// expect reads the next handshake message and parses it into m; a message
// of another type is unexpected_message.
func (c *Conn) expect(ctx context.Context, m handshakeMessage, name string) (handshakeMsg, error) {
	hm, err := c.readHandshake(ctx)
	if err != nil {
		return hm, err
	}
	if hm.typ != m.typ() {
		return hm, localAlert(alertUnexpectedMessage, fmt.Errorf("expected %s, got handshake type %d", name, hm.typ))
	}
	if err := m.unmarshal(hm.body); err != nil {
		return hm, err
	}
	return hm, nil
}

// looksLikeFinished reports a protected handshake record of exactly the
// size of a Finished, in a datagram that also carries a ChangeCipherSpec:
// the peer's Finished as its flight sends it. Other undecryptable records
// are noise (or forgeries) and are only dropped.
func (c *Conn) looksLikeFinished(r *record) bool {
	return c.datagramHasCCS && r.contentType == recordHandshake && len(r.fragment) == c.rl.read[1].overhead+handshakeHeaderLen+12
}

// maxBadHandshakeRecords is how many protected records from the peer may
// fail authentication during a handshake before it is abandoned.
const maxBadHandshakeRecords = 3

var errKeysDiffer = errors.New("the peer's protected records do not authenticate: the two sides derived different keys (wrong PSK?)")

// maxEarlyRecords bounds the records kept while their epoch has no keys yet.
const maxEarlyRecords = 8

// handleDatagram processes every record of a datagram: handshake fragments
// go to the reassembler, application data to the read queue, alerts end the
// connection. Records that fail checks are dropped (RFC 6347 §4.1.2.7).
func (c *Conn) handleDatagram(d []byte) {
	c.stats.datagramsReceived.Add(1)
	c.stats.bytesReceived.Add(int64(len(d)))
	records, err := parseRecords(d)
	if err != nil {
		c.cfg.logger().Debug("dtls: dropping malformed record", "peer", c.raddr.String(), "err", err)
	}
	// A ChangeCipherSpec in the datagram marks the peer's own flight: the
	// Finished next to it is a real one, not a stray record.
	c.datagramHasCCS = false
	for i := range records {
		c.datagramHasCCS = c.datagramHasCCS || records[i].contentType == recordChangeCipherSpec
	}
	for i := range records {
		c.handleRecord(&records[i])
	}
}

func (c *Conn) handleRecord(r *record) {
	if r.epoch == 1 && !c.rl.readKeysSet {
		if len(c.early) < maxEarlyRecords {
			c.early = append(c.early, earlyRecord{raw: append([]byte(nil), r.raw...), withCCS: c.datagramHasCCS})
		}
		return
	}
	if err := c.rl.open(r); err != nil {
		c.cfg.logger().Debug("dtls: dropping record", "peer", c.raddr.String(), "epoch", r.epoch, "err", err)
		if errors.Is(err, errRecordMAC) && r.epoch == 1 && !c.hsDone.Load() && !c.epoch1OK && c.looksLikeFinished(r) {
			// The peer's first protected records keep failing: its keys
			// differ from ours, which in practice is a wrong PSK. Say so
			// rather than wait for the handshake timeout; one stray
			// record is still only dropped.
			if c.badRecords++; c.badRecords >= maxBadHandshakeRecords {
				c.setReadErr(localAlert(alertBadRecordMAC, errKeysDiffer))
			}
		}
		return
	}
	if r.epoch == 1 {
		c.epoch1OK = true
	}
	switch r.contentType {
	case recordHandshake:
		frags, err := parseHandshakeFragments(r.fragment)
		if err != nil {
			c.cfg.logger().Debug("dtls: dropping malformed handshake record", "peer", c.raddr.String(), "err", err)
		}
		for _, f := range frags {
			if c.hsDone.Load() && f.seq >= c.reasm.next {
				c.postHandshakeMessage(f, r.epoch)
				continue
			}
			if err := c.reasm.add(f, r.epoch); errors.Is(err, errOldMessage) {
				c.peerRetransmit = true
			} else if err != nil {
				c.cfg.logger().Debug("dtls: dropping handshake fragment", "peer", c.raddr.String(), "err", err)
			}
		}
		if c.hsDone.Load() && c.peerRetransmit {
			// The peer did not get our last flight.
			c.peerRetransmit = false
			if time.Since(c.lastSend) >= c.cfg.retransmitInterval()/2 {
				_ = c.resendFlight()
			}
		}
	case recordChangeCipherSpec:
		if r.epoch == 0 && len(r.fragment) == 1 && r.fragment[0] == 1 {
			c.peerCCS = true
		}
	case recordAlert:
		if len(r.fragment) != 2 {
			return
		}
		if c.hsDone.Load() && r.epoch == 0 {
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
		if len(c.appData) < inboundQueue {
			c.appData = append(c.appData, r.fragment)
		}
	}
}

func (c *Conn) setReadErr(err error) {
	if c.readErr == nil {
		c.readErr = err
	}
}

// postHandshakeMessage handles a new handshake message on an established
// connection. This engine does not renegotiate: a server's HelloRequest is
// ignored and a client's renegotiating ClientHello gets no_renegotiation.
func (c *Conn) postHandshakeMessage(f handshakeFragment, epoch uint16) {
	if epoch == 1 && !c.isClient && f.msgType == typeClientHello && f.offset == 0 {
		_ = c.sendAlert(alertLevelWarning, alertNoRenegotiation)
	}
}

// installKeys sets the epoch-1 cipher and replays records that arrived
// before it.
func (c *Conn) installKeys(rc recordCipher, overhead int) {
	c.writeMu.Lock()
	c.rl.setKeys(rc, overhead)
	c.writeMu.Unlock()
	early := c.early
	c.early = nil
	saved := c.datagramHasCCS
	for _, e := range early {
		c.datagramHasCCS = e.withCCS
		recs, _ := parseRecords(e.raw)
		for i := range recs {
			c.handleRecord(&recs[i])
		}
	}
	c.datagramHasCCS = saved
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
		c.hsErr = err
		c.hsDone.Store(true)
		c.closeTransport()
		return err
	}
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
			c.appData = c.appData[1:]
			if len(d) > len(p) {
				return 0, errShortBuffer
			}
			return copy(p, d), nil
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		select {
		case d := <-c.inbound:
			c.handleDatagram(d)
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
	if c.hsDone.Load() && c.hsErr == nil {
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
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

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

// flight collects the handshake messages of one of our flights: each gets
// the next message_seq and enters the transcript as it is added.
type flight struct {
	c     *Conn
	items []outItem
}

func (c *Conn) newFlight() *flight { return &flight{c: c} }

func (f *flight) add(m handshakeMessage, epoch uint16) error {
	it, err := f.c.handshakeItem(m, epoch)
	if err != nil {
		return err
	}
	f.c.addTranscript(it.msgType, it.seq, it.body)
	f.items = append(f.items, it)
	return nil
}

// send sends the flight and keeps it for retransmission.
func (f *flight) send() error { return f.c.sendFlight(f.items) }

// finish ends the flight with ChangeCipherSpec and our Finished over the
// transcript so far, sends it, and switches our writing to epoch 1.
func (f *flight) finish(ms []byte) error {
	vd, err := finishedData(ms, f.c.transcript, f.c.isClient)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	f.items = append(f.items, outItem{ccs: true, epoch: 0})
	if err := f.add(&finishedMsg{verifyData: vd}, 1); err != nil {
		return err
	}
	if err := f.send(); err != nil {
		return err
	}
	f.c.writeMu.Lock()
	f.c.rl.startWriteEpoch1()
	f.c.writeMu.Unlock()
	return nil
}
