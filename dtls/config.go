package dtls

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// PSKCallback returns the pre-shared key for a PSK identity (on the server)
// or for the server's identity hint (on the client; the hint may be empty).
type PSKCallback func(identityOrHint []byte) ([]byte, error)

// ExtendedMasterSecretType says how RFC 7627 is applied.
type ExtendedMasterSecretType int

const (
	// RequestExtendedMasterSecret uses the extended master secret whenever the
	// peer supports it (default).
	RequestExtendedMasterSecret ExtendedMasterSecretType = iota
	// RequireExtendedMasterSecret refuses peers without it.
	RequireExtendedMasterSecret
	// DisableExtendedMasterSecret never offers or accepts it.
	DisableExtendedMasterSecret
)

// ClientAuthType says whether a server asks for a client certificate.
type ClientAuthType int

const (
	NoClientCert ClientAuthType = iota
	RequestClientCert
	RequireAnyClientCert
	VerifyClientCertIfGiven
	RequireAndVerifyClientCert
)

// Config configures a client or server. A Config may be shared by many
// connections and must not be modified after first use.
type Config struct {
	// Certificates are the ECDSA (P-256 or P-384) certificate chains this side may
	// present. A server with neither Certificates nor PSK gets a self-signed
	// certificate generated at start.
	Certificates []tls.Certificate

	// CipherSuites in preference order; nil means all implemented suites
	// that the credentials allow.
	CipherSuites []CipherSuiteID
	// CurvePreferences are the ECDHE groups, in the order a client offers
	// them; a server takes the first of the client's it has here. Default
	// P-256, X25519, P-384.
	CurvePreferences []CurveID

	// PSK returns the pre-shared key (see PSKCallback).
	PSK PSKCallback
	// PSKIdentityHint is, on a client, the identity it sends and, on a
	// server, the hint it sends (nil: no ServerKeyExchange in PSK suites).
	PSKIdentityHint []byte
	// RevealUnknownPSKIdentity makes a server answer an identity its PSK
	// callback does not know with unknown_psk_identity at once. By default
	// it goes on as if the identity existed with another key, so that an
	// unknown identity and a wrong key look the same, decrypt_error after
	// the same exchange, and identities cannot be enumerated (RFC 4279 §2).
	RevealUnknownPSKIdentity bool

	// RootCAs verify the server's chain on a client; ClientCAs verify the
	// client's chain on a server.
	RootCAs    *x509.CertPool
	ClientCAs  *x509.CertPool
	ClientAuth ClientAuthType
	// RawPublicKey makes this side present the public key of
	// Certificates[0] as a raw public key (RFC 7250) instead of the
	// certificate when the peer accepts one; Certificates[0] may then hold
	// only the private key.
	RawPublicKey bool
	// PeerPublicKeys pins the raw public keys (DER SubjectPublicKeyInfo) a
	// peer may present; with them, or VerifyPeerPublicKey, this side
	// accepts raw public keys. A peer's key outside them is bad_certificate.
	PeerPublicKeys [][]byte
	// VerifyPeerPublicKey, if set, decides whether a peer's raw public key
	// (DER SubjectPublicKeyInfo) is accepted, after the PeerPublicKeys
	// check (when that list is empty, it decides alone).
	VerifyPeerPublicKey func(spki []byte) error

	// ServerName is checked against the server certificate and sent as SNI.
	ServerName string
	// InsecureSkipVerify accepts any server certificate. For tests only;
	// VerifyPeerCertificate still runs.
	InsecureSkipVerify bool
	// VerifyPeerCertificate, if set, runs after the normal checks; it can pin
	// a key.
	VerifyPeerCertificate func(rawCerts [][]byte, verifiedChains [][]*x509.Certificate) error

	// ExtendedMasterSecret policy (RFC 7627); default Request.
	ExtendedMasterSecret ExtendedMasterSecretType

	// MTU is the largest UDP payload this side sends; default 1232, which
	// fits a 1280-byte IPv6 path.
	MTU int
	// RetransmitInterval is the initial flight timer (RFC 6347 §4.2.4.1);
	// default 1 s. RFC 7925 suggests 9 s for constrained networks.
	RetransmitInterval time.Duration
	// RetransmitMax caps the doubling timer; default 60 s.
	RetransmitMax time.Duration
	// HandshakeTimeout bounds a whole handshake when the caller's context
	// has no deadline; default 60 s.
	HandshakeTimeout time.Duration
	// ReplayWindow is the number of records in the anti-replay window;
	// default 64.
	ReplayWindow int

	// CookieRotation is how often a listener changes its cookie secret; a
	// cookie made with the previous secret is still accepted. Default 5 min.
	CookieRotation time.Duration

	// Resumption is, on a client, the ordered list of resumption mechanisms
	// it offers in the session_resumption_type extension; nil sends no
	// extension (a plain RFC 5246/5077 client). On a server it is the list
	// of mechanisms it allows; nil allows every one its configuration
	// supports. The server picks the first mechanism in the client's order
	// that it allows (docs/decisions.md 21-22).
	Resumption []negotiation.Type
	// ResumptionExtensionType is the extension's codepoint, which both
	// peers must agree on; default negotiation.DefaultCodepoint (0xFF42).
	ResumptionExtensionType uint16
	// ClientStateKey is the 16-byte key a client_state client seals its own
	// tickets with; nil derives it from the PSK or the certificate's private
	// key, so the client needs nothing beyond its credential.
	ClientStateKey []byte
	// AllowShortClientStatePSK lets a client_state client derive its ticket
	// key from a PSK shorter than 16 bytes. Its handle and tickets, sent in
	// clear, let an eavesdropper test guesses of such a key offline
	// (docs/decisions.md 44), so it is refused unless this is set.
	AllowShortClientStatePSK bool

	// SessionStore keeps a server's sessions for session-ID resumption
	// (RFC 5246) and the records of client_state clients; nil disables
	// both. Package store has implementations.
	SessionStore SessionStore
	// SessionTicketsDisabled stops a server from issuing RFC 5077 tickets
	// and a client from asking for them.
	SessionTicketsDisabled bool
	// TicketKeys seal and open a server's tickets; nil gives each Listener
	// (or Server) a ring of its own that rotates daily. Share one ring
	// between servers that should accept each other's tickets.
	TicketKeys *ticketfmt.KeyRing
	// SessionLifetime is how long a session stays resumable after it was
	// last (re)issued; default 24 h.
	SessionLifetime time.Duration
	// MaxSessionAge caps a session's age across ticket renewals; default
	// 7 days.
	MaxSessionAge time.Duration
	// ClientSessionCache keeps a client's sessions; nil means the client
	// never resumes. Sessions are keyed by ServerName, or by the dialled
	// address when ServerName is empty.
	ClientSessionCache ClientSessionCache
	// ResumptionCookie says when a server may skip the HelloVerifyRequest
	// for a resumption it will accept (docs/decisions.md 18).
	ResumptionCookie CookiePolicy
	// AmplificationFactor bounds, under the default CookiePolicy, the
	// server's cookie-less reply flight as a multiple of the ClientHello
	// datagram; default 3 (as QUIC, RFC 9000 §8.1).
	AmplificationFactor float64

	// Resource limits of a server (docs/decisions.md, "Resource model");
	// zero means the Default… constant of the same name. A limit costs a
	// newcomer a HelloVerifyRequest or a dropped datagram, never an
	// established connection.
	//
	// MaxConnections bounds the associations a Listener holds, handshakes
	// included.
	MaxConnections int
	// MaxHandshakes bounds the handshakes running at once on a Listener,
	// and MaxHandshakesPerIP those from one IP address.
	MaxHandshakes      int
	MaxHandshakesPerIP int
	// MaxHandshakeMemory bounds the bytes of handshake fragments one
	// handshake holds while their messages are incomplete; memory is taken
	// as fragments arrive, never on a declared length. A handshake whose
	// peer skipped the cookie exchange gets at most 4 KiB.
	MaxHandshakeMemory int
	// MaxInboundBytes bounds the received datagrams a connection queues
	// before they are read; more are dropped.
	MaxInboundBytes int
	// AcceptBacklog is how many completed connections wait for Accept;
	// one completing when the backlog is full is closed.
	AcceptBacklog int
	// CookieLifetime is how long a HelloVerifyRequest cookie stays valid;
	// default 60 s.
	CookieLifetime time.Duration
	// LimitObserver, if set, is called each time a limit is reached. It
	// must not block.
	LimitObserver func(Limit)

	// HandshakeObserver, if set, is called once per handshake when it ends,
	// with the connection's state and nil, or with what is known and the
	// error. Servers call it for every handshake that got past the cookie
	// exchange, so it sees failures Accept never returns. It must not
	// block.
	HandshakeObserver func(ConnectionState, error)

	// Logger receives debug and warning messages; nil discards them. No
	// secret is ever logged.
	Logger *slog.Logger

	// ConnectionIDGenerator, if set, offers (client) or accepts (server)
	// connection IDs (RFC 9146) on every handshake kind: it returns the CID
	// this side wants in the records sent to it, empty for "I can send
	// CIDs but need none". A server's CIDs must all have one length, which
	// its Listener routes records by. RandomCIDGenerator and
	// OnlySendCIDGenerator make the usual ones.
	ConnectionIDGenerator func() []byte
	// CIDPadding is how many zero bytes pad each record this side sends
	// with a connection ID (RFC 9146 §4 DTLSInnerPlaintext), hiding the
	// length of what it carries.
	CIDPadding int

	// Trace, if set, is called for each handshake message and
	// ChangeCipherSpec this side sends or receives, as OpenSSL's s_client
	// -msg prints them; the CLI's -v uses it. It must not block.
	Trace func(TraceEvent)

	// KeyLogWriter, if set, receives each connection's master secret in
	// the NSS key log format ("CLIENT_RANDOM <client random> <master
	// secret>", hex), which Wireshark reads to decrypt a capture. It
	// defeats the security of every connection it logs: use it only to
	// debug. Writes are serialised across connections sharing the Config.
	KeyLogWriter io.Writer

	// Time returns the current time; nil means time.Now.
	Time func() time.Time

	// limitLog rate-limits the log lines of reached limits; a server's
	// Config copy has one.
	limitLog *limitLogger
}

// RandomCIDGenerator returns a ConnectionIDGenerator of random CIDs of
// size bytes (1 to 255).
func RandomCIDGenerator(size int) func() []byte {
	return func() []byte {
		cid := make([]byte, size)
		if _, err := rand.Read(cid); err != nil {
			panic("dtls: crypto/rand failed: " + err.Error())
		}
		return cid
	}
}

// OnlySendCIDGenerator returns a ConnectionIDGenerator for a side that
// sends the peer's CID but wants none itself (RFC 9146's zero-length CID).
func OnlySendCIDGenerator() func() []byte { return func() []byte { return []byte{} } }

// TraceEvent is one handshake message (or ChangeCipherSpec) that a side
// sent or received.
type TraceEvent struct {
	Sent bool
	// Message is "ClientHello", "ServerHello", ..., or "ChangeCipherSpec".
	Message string
	// Length is the message's body length in bytes (1 for ChangeCipherSpec).
	Length int
	Epoch  uint16
	// Retransmission marks a flight sent again.
	Retransmission bool
}

// CookiePolicy says when a server requires a cookie exchange.
type CookiePolicy int

const (
	// CookieUnlessBounded skips the cookie exchange for a resumption the
	// server will accept when its reply flight is at most
	// AmplificationFactor times the ClientHello datagram (default).
	CookieUnlessBounded CookiePolicy = iota
	// CookieAlways exchanges a cookie before every handshake.
	CookieAlways
	// CookieNeverOnResumption skips it for every resumption the server will
	// accept, whatever the reply's size.
	CookieNeverOnResumption
)

const (
	defaultSessionLifetime     = 24 * time.Hour
	defaultMaxSessionAge       = 7 * 24 * time.Hour
	defaultAmplificationFactor = 3
)

func (c *Config) sessionLifetime() time.Duration {
	if c.SessionLifetime <= 0 {
		return defaultSessionLifetime
	}
	return c.SessionLifetime
}

func (c *Config) maxSessionAge() time.Duration {
	if c.MaxSessionAge <= 0 {
		return defaultMaxSessionAge
	}
	return c.MaxSessionAge
}

func (c *Config) amplificationFactor() float64 {
	if c.AmplificationFactor <= 0 {
		return defaultAmplificationFactor
	}
	return c.AmplificationFactor
}

const (
	// DefaultMTU is the MTU of a Config that sets none.
	DefaultMTU                = 1232
	defaultRetransmitInterval = time.Second
	defaultRetransmitMax      = 60 * time.Second
	defaultHandshakeTimeout   = 60 * time.Second
	defaultReplayWindow       = 64
	defaultCookieRotation     = 5 * time.Minute
	minMTU                    = 256
)

func (c *Config) mtu() int {
	if c.MTU == 0 {
		return DefaultMTU
	}
	return c.MTU
}

func (c *Config) retransmitInterval() time.Duration {
	if c.RetransmitInterval <= 0 {
		return defaultRetransmitInterval
	}
	return c.RetransmitInterval
}

func (c *Config) retransmitMax() time.Duration {
	if c.RetransmitMax <= 0 {
		return defaultRetransmitMax
	}
	return c.RetransmitMax
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout <= 0 {
		return defaultHandshakeTimeout
	}
	return c.HandshakeTimeout
}

func (c *Config) cookieRotation() time.Duration {
	if c.CookieRotation <= 0 {
		return defaultCookieRotation
	}
	return c.CookieRotation
}

func (c *Config) replayWindow() int {
	if c.ReplayWindow <= 0 {
		return defaultReplayWindow
	}
	return c.ReplayWindow
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

// keyLogMu serialises KeyLogWriter writes, which come from every
// connection's handshake goroutine.
var keyLogMu sync.Mutex

// writeKeyLog writes one NSS key log line for a connection, if asked to.
func (c *Config) writeKeyLog(clientRandom [32]byte, ms []byte) {
	if c.KeyLogWriter == nil {
		return
	}
	line := fmt.Sprintf("CLIENT_RANDOM %x %x\n", clientRandom[:], ms)
	keyLogMu.Lock()
	defer keyLogMu.Unlock()
	if _, err := io.WriteString(c.KeyLogWriter, line); err != nil {
		c.logger().Warn("dtls: writing the key log", "err", err)
	}
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// suites returns the configured suites usable with the configured
// credentials, in order.
func (c *Config) suites(isClient bool) []*cipherSuite {
	ids := c.CipherSuites
	if ids == nil {
		ids = CipherSuites()
	}
	var out []*cipherSuite
	for _, id := range ids {
		s := cipherSuiteByID(uint16(id))
		if s == nil {
			continue
		}
		switch s.kx {
		case kxPSK, kxECDHEPSK:
			if c.PSK == nil {
				continue
			}
		case kxECDHE:
			if !isClient && len(c.Certificates) == 0 {
				continue
			}
			if isClient && c.PSK != nil && c.CipherSuites == nil && c.RootCAs == nil && !c.InsecureSkipVerify && c.VerifyPeerCertificate == nil {
				// A PSK client that configured nothing for certificates
				// offers only PSK suites.
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

func (c *Config) validate(isClient bool) error {
	if c == nil {
		return errors.New("dtls: nil Config")
	}
	if c.MTU != 0 && c.MTU < minMTU {
		return errors.New("dtls: Config.MTU below 256")
	}
	for _, id := range c.CipherSuites {
		if cipherSuiteByID(uint16(id)) == nil {
			return errors.New("dtls: Config.CipherSuites names an unimplemented suite " + id.String())
		}
	}
	for _, g := range c.CurvePreferences {
		if _, ok := pionCurve(g); !ok {
			return errors.New("dtls: Config.CurvePreferences names an unimplemented group " + g.String())
		}
	}
	if len(c.suites(isClient)) == 0 {
		if isClient {
			return errors.New("dtls: no usable cipher suite: set PSK for PSK suites or RootCAs/InsecureSkipVerify for ECDHE-ECDSA")
		}
		return errors.New("dtls: no usable cipher suite: set PSK or Certificates for the configured suites")
	}
	if isClient && c.PSK != nil && c.PSKIdentityHint == nil {
		return errors.New("dtls: a PSK client needs PSKIdentityHint (the identity it sends)")
	}
	if len(c.Resumption) > 0 {
		if err := negotiation.Policy(c.Resumption).Validate(); err != nil {
			return fmt.Errorf("dtls: Config.Resumption: %w", err)
		}
		if isClient && negotiation.Policy(c.Resumption).Allows(negotiation.ClientState) {
			if _, err := c.clientStateKey(); err != nil {
				return err
			}
		}
	}
	if len(c.ServerName) > 255 {
		return errors.New("dtls: Config.ServerName longer than 255 bytes")
	}
	return nil
}
