package dtls

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// The server's side of resumption: which session a ClientHello resumes
// (store lookups, tickets), which mechanism a full handshake sets up, and
// whether the cookie exchange may be skipped, judged on the reply that will
// actually be sent.

// resumption is a session that a ClientHello asks to resume and that the
// server accepts, with the ServerHello (and renewed ticket) that answer it.
type resumption struct {
	state     *ticketfmt.State
	mech      negotiation.Type // SessionID, SessionTicket or ClientState
	sessionID []byte           // echoed in the ServerHello
	renew     bool             // send a fresh ticket
	// clientTicket is the client's own sealed state (client_state), which
	// goes back in the ServerHello.
	clientTicket []byte
	// storedBytes is what the server keeps for this session (key and
	// value in its SessionStore; 0 for tickets).
	storedBytes int

	// serverHello is the reply's ServerHello and reply its handshake
	// messages (ServerHello and, when renewing, NewSessionTicket) with their
	// message_seq, encoded once by prepare: the cookie decision measures
	// them and the handshake sends them.
	serverHello *serverHelloMsg
	reply       []outItem
	// cid is the server's connection ID in that ServerHello (nil: none).
	cid []byte
}

// errEMSDowngrade is RFC 7627 §5.3: a session made with the extended master
// secret must not be resumed by a hello without it.
var errEMSDowngrade = errors.New("ClientHello: resumes a session with the extended master secret but does not offer it")

// clientOffer parses the client's session_resumption_type extension; nil
// when it sent none.
func (cfg *Config) clientOffer(hello *clientHelloMsg) (*negotiation.ClientOffer, error) {
	v, ok := findExtension(hello.extensions, cfg.resumptionExtension())
	if !ok {
		return nil, nil
	}
	o, err := negotiation.ParseClientOffer(v)
	if err != nil {
		return nil, localAlert(alertDecodeError, fmt.Errorf("ClientHello: session_resumption_type: %w", err))
	}
	return o, nil
}

// storeTimeout bounds each SessionStore call of a handshake: a store that
// hangs (a network store that is down) costs a full handshake, not a hung
// one.
const storeTimeout = 500 * time.Millisecond

// storeGet and storePut call the SessionStore under storeTimeout.
func (cfg *Config) storeGet(ctx context.Context, key []byte) ([]byte, error) {
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > storeTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, storeTimeout)
		defer cancel()
	}
	v, err := cfg.SessionStore.Get(ctx, key)
	if err != nil && ctx.Err() != nil {
		cfg.logger().Warn("dtls: session store lookup timed out; full handshake", "err", err)
	}
	return v, err
}

func (cfg *Config) storePut(ctx context.Context, key, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return cfg.SessionStore.Put(ctx, key, value, ttl)
}

// serverAllows reports whether a server may use mechanism t: its policy
// allows it and its configuration supports it.
func (cfg *Config) serverAllows(t negotiation.Type) bool {
	if cfg.Resumption != nil && !negotiation.Policy(cfg.Resumption).Allows(t) {
		return false
	}
	switch t {
	case negotiation.None:
		return true
	case negotiation.SessionTicket:
		return !cfg.SessionTicketsDisabled && cfg.TicketKeys != nil
	case negotiation.SessionID, negotiation.ClientState:
		return cfg.SessionStore != nil
	}
	return false
}

// findResumption looks up the session a ClientHello asks for: a
// client_state record by handle when the client asks for one back, else the
// ticket in its SessionTicket extension, else its session ID. It returns nil
// when there is nothing the server may resume, and an error only when the
// handshake must fail.
func findResumption(ctx context.Context, cfg *Config, ch *clientHelloInfo) (*resumption, error) {
	if ch.err != nil {
		return nil, ch.err
	}
	hello := ch.hello
	var res *resumption
	switch {
	case ch.offer != nil && ch.offer.Resume:
		// The session ID is a fresh random value here: never look it up.
		if !cfg.serverAllows(negotiation.ClientState) {
			return nil, nil
		}
		key := clientStateKeyName(ch.offer.Handle)
		v, err := cfg.storeGet(ctx, key)
		if err != nil {
			return nil, nil
		}
		rec, err := parseClientStateRecord(v)
		if err != nil {
			cfg.logger().Warn("dtls: undecodable client_state record in the store", "err", err)
			return nil, nil
		}
		res = &resumption{state: rec.state, mech: negotiation.ClientState, sessionID: hello.sessionID, clientTicket: rec.ticket,
			storedBytes: len(key) + len(v)}
	case len(ch.ticket) > 0 && cfg.serverAllows(negotiation.SessionTicket):
		st, err := cfg.TicketKeys.Open(ch.ticket, ticketfmt.LabelServer)
		if err != nil {
			cfg.logger().Debug("dtls: ticket not accepted", "err", err)
			return nil, nil
		}
		res = &resumption{state: st, mech: negotiation.SessionTicket, sessionID: hello.sessionID}
		res.renew = cfg.now().Sub(st.Timestamp) > st.Lifetime/2
	case len(hello.sessionID) > 0 && cfg.serverAllows(negotiation.SessionID):
		key := sessionIDKey(hello.sessionID)
		v, err := cfg.storeGet(ctx, key)
		if err != nil {
			return nil, nil
		}
		st, err := ticketfmt.ParseState(v)
		if err != nil {
			cfg.logger().Warn("dtls: undecodable session in the store", "err", err)
			return nil, nil
		}
		res = &resumption{state: st, mech: negotiation.SessionID, sessionID: hello.sessionID, storedBytes: len(key) + len(v)}
	default:
		return nil, nil
	}
	ok, err := res.acceptable(cfg, ch)
	if !ok || err != nil {
		return nil, err
	}
	return res, nil
}

// acceptable applies the rules under which a found session may be
// resumed: false means a full handshake, an error an abort.
func (res *resumption) acceptable(cfg *Config, ch *clientHelloInfo) (bool, error) {
	st := res.state
	ok := st.Version == versionDTLS12 && st.CompressionMethod == 0 && !st.Expired(cfg.now(), cfg.maxSessionAge())
	if ok {
		ok = false
		for _, s := range cfg.suites(false) {
			if uint16(s.id) == st.CipherSuite {
				for _, id := range ch.hello.cipherSuites {
					ok = ok || id == st.CipherSuite
				}
			}
		}
	}
	if ok && st.ServerName != "" {
		ok = ch.serverName == st.ServerName
	}
	switch {
	case !ok:
		return false, nil
	case !cfg.stillAccepts(&st.Peer):
		// A revoked identity gets a full handshake, which then fails.
		return false, nil
	case st.ExtendedMasterSecret && !ch.offeredEMS:
		return false, localAlert(alertHandshakeFailure, errEMSDowngrade)
	case !st.ExtendedMasterSecret && (ch.offeredEMS || cfg.ExtendedMasterSecret == RequireExtendedMasterSecret):
		// RFC 7627 §5.3: a full handshake upgrades the session.
		return false, nil
	}
	return true, nil
}

// stillAccepts asks the server's credentials again whether the session's
// client may come back: a PSK identity the PSK callback no longer knows, or
// a certificate that VerifyPeerCertificate now refuses, does not resume.
func (cfg *Config) stillAccepts(peer *ticketfmt.PeerIdentity) bool {
	switch peer.Type {
	case ticketfmt.PSK:
		if cfg.PSK == nil {
			return false
		}
		key, err := cfg.PSK(peer.PSKIdentity)
		return err == nil && len(key) > 0
	case ticketfmt.CertificateBased:
		if cfg.VerifyPeerCertificate != nil {
			return cfg.VerifyPeerCertificate(peer.Certificates, nil) == nil
		}
	case ticketfmt.RawPublicKey:
		return cfg.acceptsRawPublicKeys(false) && cfg.pinnedKey(peer.PublicKey)
	}
	return true
}

// prepare builds the reply's ServerHello (with a fresh random) and, when
// the ticket is due for renewal, the NewSessionTicket, numbered from the
// ClientHello's message_seq.
func (res *resumption) prepare(cfg *Config, ch *clientHelloInfo, helloSeq uint16, cid []byte) error {
	random, err := newRandom()
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	st := res.state
	sh := serverHelloFor(ch, random, cipherSuiteByID(st.CipherSuite), st.ExtendedMasterSecret, res.sessionID, cid)
	res.cid = cid
	msgs := []handshakeMessage{sh}
	if res.renew {
		sh.extensions = append(sh.extensions, extension{extSessionTicket, nil})
		renewed := *st
		nst, err := cfg.issueTicket(&renewed)
		if err != nil {
			return err
		}
		msgs = append(msgs, nst)
	}
	// In a resumed handshake the answer names the resumed session's type
	// and, for client_state, hands the client its ticket back.
	if err := addAnswer(cfg, ch, sh, res.mech, res.clientTicket); err != nil {
		return err
	}
	res.serverHello = sh
	res.reply = res.reply[:0]
	for i, m := range msgs {
		body, err := m.marshal()
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		res.reply = append(res.reply, outItem{epoch: 0, msgType: m.typ(), seq: helloSeq + uint16(i), body: body})
	}
	return nil
}

// replySize is the bytes of the abbreviated handshake's flight as it will
// be sent: the prepared messages, ChangeCipherSpec and Finished, packed by
// the same code that sends them.
func (res *resumption) replySize(cfg *Config) (int, error) {
	items := append(append([]outItem(nil), res.reply...), outItem{ccs: true},
		outItem{epoch: 1, msgType: typeFinished, seq: res.reply[len(res.reply)-1].seq + 1, body: make([]byte, 12)})
	return flightSize(items, cipherSuiteByID(res.state.CipherSuite).overhead, cfg.mtu())
}

// chooseMechanism is the server's pick for a full handshake: the first
// type in the client's order that the server allows (docs/decisions.md 21-22).
// A client without the extension implicitly offers a ticket if it sent the
// SessionTicket extension, then a session ID (RFC 5077 §3.4, RFC 5246).
func (cfg *Config) chooseMechanism(ch *clientHelloInfo) negotiation.Type {
	var offered []negotiation.Type
	if ch.offer != nil {
		offered = ch.offer.Offered
	} else {
		if ch.ticketExt {
			offered = append(offered, negotiation.SessionTicket)
		}
		offered = append(offered, negotiation.SessionID)
	}
	var allowed negotiation.Policy
	for _, t := range offered {
		ok := cfg.serverAllows(t)
		switch t {
		case negotiation.SessionTicket:
			ok = ok && ch.ticketExt // the ticket travels in RFC 5077's messages
		case negotiation.ClientState:
			ok = ok && len(ch.offer.Handle) == negotiation.HandleSize
		}
		if ok {
			allowed = append(allowed, t)
		}
	}
	return negotiation.Select(offered, allowed)
}

// skipCookie applies docs/decisions.md 18: no cookie exchange for a
// resumption the server will accept whose reply stays within the
// amplification bound. The lookup and the prepared reply are kept in first
// for the handshake.
func (cfg *Config) skipCookie(ctx context.Context, first *firstHello) bool {
	if cfg.ResumptionCookie == CookieAlways {
		return false
	}
	res, err := findResumption(ctx, cfg, first.info)
	if err != nil || res == nil {
		return false
	}
	if err := res.prepare(cfg, first.info, first.msg.seq, cfg.offerCID(first.info)); err != nil {
		return false
	}
	first.res, first.resChecked = res, true
	if cfg.ResumptionCookie == CookieNeverOnResumption {
		return true
	}
	n, err := res.replySize(cfg)
	return err == nil && float64(n) <= cfg.amplificationFactor()*float64(first.size)
}

// offerCID is a fresh server CID for a hello that offers the extension, or
// nil.
func (cfg *Config) offerCID(ch *clientHelloInfo) []byte {
	if !ch.cidOffered || cfg.ConnectionIDGenerator == nil {
		return nil
	}
	return cfg.ConnectionIDGenerator()
}

// issueTicket seals a session into a NewSessionTicket.
func (cfg *Config) issueTicket(st *ticketfmt.State) (*newSessionTicketMsg, error) {
	ticket, err := cfg.TicketKeys.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		return nil, localAlert(alertInternalError, fmt.Errorf("sealing a ticket: %w", err))
	}
	return &newSessionTicketMsg{lifetimeHint: uint32(st.Lifetime / time.Second), ticket: ticket}, nil
}

// storeSession keeps a full handshake's session under its new session ID.
func (c *Conn) storeSession(ctx context.Context, sessionID []byte, st *ticketfmt.State) {
	key := sessionIDKey(sessionID)
	if v, err := st.Marshal(); err != nil {
		c.cfg.logger().Warn("dtls: encoding session", "err", err)
	} else if err := c.cfg.storePut(ctx, key, v, c.cfg.sessionLifetime()); err != nil {
		c.cfg.logger().Warn("dtls: storing session; it will not resume", "err", err)
	} else {
		c.state.ResumptionStateBytes = len(key) + len(v)
	}
	c.state.SessionID = sessionID
}

// storeClientState keeps a client's ticket after its Finished verified,
// under a handle that names that client (docs/decisions.md 44); an
// anonymous client can only write handles of anonymous clients.
func (c *Conn) storeClientState(ctx context.Context, handle []byte, nst *newSessionTicketMsg, st *ticketfmt.State) {
	key := clientStateKeyName(handle)
	if !ownsHandle(handle, &st.Peer) {
		// The handle names another client: storing would take its
		// resumption over. Refused whatever the store holds (fail closed).
		c.cfg.logger().Warn("dtls: client_state handle names another client; not stored", "peer", c.remote().String())
		return
	}
	ttl := c.cfg.sessionLifetime()
	if hint := time.Duration(nst.lifetimeHint) * time.Second; hint > 0 && hint < ttl {
		ttl = hint
	}
	st.Lifetime = ttl
	v, err := (&clientStateRecord{ticket: nst.ticket, state: st}).marshal()
	if err == nil {
		err = c.cfg.storePut(ctx, key, v, ttl)
	}
	if err != nil {
		c.cfg.logger().Warn("dtls: storing a client_state record; it will not resume", "err", err)
		return
	}
	c.state.ResumptionStateBytes = len(key) + len(v)
}
