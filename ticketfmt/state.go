package ticketfmt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// FormatVersion is the StatePlaintext format_version this package writes and
// the only one it reads.
const FormatVersion = 1

// Wire limits of the variable-length StatePlaintext fields.
const (
	maxU16 = 1<<16 - 1
	maxU24 = 1<<24 - 1
)

// AuthType is the ClientAuthenticationType of a PeerIdentity.
//
//	enum {
//	    anonymous(0), certificate_based(1), psk(2), raw_public_key(255)
//	} ClientAuthenticationType;
//
// The first three are RFC 5077's; raw_public_key(255) carries an RFC 7250
// raw public key, as RFC 7925 devices use.
type AuthType uint8

// The ClientAuthenticationType values.
const (
	Anonymous        AuthType = 0
	CertificateBased AuthType = 1
	PSK              AuthType = 2
	RawPublicKey     AuthType = 255
)

// String returns the presentation-language name of t.
func (t AuthType) String() string {
	switch t {
	case Anonymous:
		return "anonymous"
	case CertificateBased:
		return "certificate_based"
	case PSK:
		return "psk"
	case RawPublicKey:
		return "raw_public_key"
	default:
		return fmt.Sprintf("unknown(%d)", uint8(t))
	}
}

// PeerIdentity is RFC 5077's ClientIdentity, extended with raw_public_key.
// In a server ticket it names the authenticated client, as in RFC 5077; in a
// client_state ticket it names the server as the client verified it.
//
//	struct {
//	    ClientAuthenticationType client_authentication_type;
//	    select (ClientAuthenticationType) {
//	        case anonymous:         struct {};
//	        case certificate_based: ASN.1Cert certificate_list<0..2^24-1>;
//	        case psk:               opaque psk_identity<0..2^16-1>;
//	        case raw_public_key:    opaque subject_public_key_info<1..2^24-1>;
//	    };
//	} PeerIdentity;
//
//	opaque ASN.1Cert<1..2^24-1>;
//
// Only the field that belongs to Type may be set: Certificates (DER, leaf
// first) for CertificateBased, PSKIdentity for PSK, PublicKey (a DER
// SubjectPublicKeyInfo) for RawPublicKey, none for Anonymous. Parsed values
// never alias the parsed buffer; empty fields parse as nil.
type PeerIdentity struct {
	Type         AuthType
	Certificates [][]byte
	PSKIdentity  []byte
	PublicKey    []byte
}

// Equal reports whether p and q name the same peer. Nil and empty byte
// strings are equal.
func (p *PeerIdentity) Equal(q *PeerIdentity) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.Type != q.Type || len(p.Certificates) != len(q.Certificates) {
		return false
	}
	for i := range p.Certificates {
		if !bytes.Equal(p.Certificates[i], q.Certificates[i]) {
			return false
		}
	}
	return bytes.Equal(p.PSKIdentity, q.PSKIdentity) && bytes.Equal(p.PublicKey, q.PublicKey)
}

// State is the session state sealed in a ticket: the StatePlaintext.
//
//	struct {
//	    uint8             format_version;         /* 1 */
//	    ProtocolVersion   protocol_version;       /* uint16, 0xfefd for DTLS 1.2 */
//	    CipherSuite       cipher_suite;           /* uint16 */
//	    CompressionMethod compression_method;     /* uint8 */
//	    opaque            master_secret[48];
//	    PeerIdentity      peer_identity;          /* RFC 5077 ClientIdentity, extended */
//	    uint32            timestamp;              /* when this ticket was sealed, unix seconds */
//	    uint8             extended_master_secret; /* 0 or 1 */
//	    uint32            session_created;        /* original full handshake, unix seconds */
//	    uint32            lifetime;               /* seconds */
//	    uint32            cert_not_after;         /* peer leaf expiry, unix seconds, 0 if n/a */
//	    opaque            server_name<0..2^16-1>;
//	    uint8             resumption_type;        /* 0 none, 1 session_id, 2 session_ticket, 3 client_state */
//	} StatePlaintext;
//
// Times travel as unix seconds: Marshal drops fractions of a second and
// ParseState returns UTC times. A zero time.Time is encoded as 0 and 0 parses
// as the zero time.Time; other times must lie in (1970, 2106], except
// CertNotAfter, which is capped at 2106-02-07 (0xffffffff) because
// certificates without a real expiry say 9999-12-31. Lifetime is whole
// seconds, at most 2^32-1.
//
// The codec does not check Version, CipherSuite or CompressionMethod against
// any list: the engine compares them with what it negotiates.
// ResumptionType is informational; values above 3 are rejected.
type State struct {
	Version              uint16
	CipherSuite          uint16
	CompressionMethod    uint8
	MasterSecret         [48]byte
	Peer                 PeerIdentity
	Timestamp            time.Time
	ExtendedMasterSecret bool
	SessionCreated       time.Time
	Lifetime             time.Duration
	CertNotAfter         time.Time
	ServerName           string
	ResumptionType       uint8
}

// maxResumptionType is client_state, the highest SessionResumptionType.
const maxResumptionType = 3

// Expired reports whether s may no longer be resumed at now: its ticket
// lifetime is over (now ≥ Timestamp+Lifetime), the session is older than
// maxAge (now ≥ SessionCreated+maxAge; maxAge 0 means no cap), or the peer
// certificate has expired (CertNotAfter set and now after it; X.509's
// notAfter is the last valid second). A state whose Timestamp or, with a cap,
// SessionCreated is unset is expired.
func (s *State) Expired(now time.Time, maxAge time.Duration) bool {
	if !now.Before(s.Timestamp.Add(s.Lifetime)) {
		return true
	}
	if maxAge > 0 && !now.Before(s.SessionCreated.Add(maxAge)) {
		return true
	}
	return !s.CertNotAfter.IsZero() && now.After(s.CertNotAfter)
}

// Marshal encodes s as a StatePlaintext with format_version FormatVersion.
func (s *State) Marshal() ([]byte, error) {
	ts, err := unixSeconds(s.Timestamp, "timestamp")
	if err != nil {
		return nil, err
	}
	created, err := unixSeconds(s.SessionCreated, "session_created")
	if err != nil {
		return nil, err
	}
	notAfter, err := unixSeconds(capTime(s.CertNotAfter), "cert_not_after")
	if err != nil {
		return nil, err
	}
	if s.Lifetime < 0 || s.Lifetime/time.Second > math.MaxUint32 {
		return nil, fmt.Errorf("ticketfmt: StatePlaintext: lifetime: %v out of range", s.Lifetime)
	}
	lifetime := uint32(s.Lifetime / time.Second)
	if len(s.ServerName) > maxU16 {
		return nil, fmt.Errorf("ticketfmt: StatePlaintext: server_name: %d bytes, more than %d", len(s.ServerName), maxU16)
	}
	if s.ResumptionType > maxResumptionType {
		return nil, fmt.Errorf("ticketfmt: StatePlaintext: resumption_type: unknown value %d", s.ResumptionType)
	}
	if err := s.Peer.check(); err != nil {
		return nil, err
	}

	var b cryptobyte.Builder
	b.AddUint8(FormatVersion)
	b.AddUint16(s.Version)
	b.AddUint16(s.CipherSuite)
	b.AddUint8(s.CompressionMethod)
	b.AddBytes(s.MasterSecret[:])
	s.Peer.marshal(&b)
	b.AddUint32(ts)
	b.AddUint8(boolByte(s.ExtendedMasterSecret))
	b.AddUint32(created)
	b.AddUint32(lifetime)
	b.AddUint32(notAfter)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.ServerName)) })
	b.AddUint8(s.ResumptionType)
	out, err := b.Bytes()
	if err != nil { // unreachable: every length was checked above
		return nil, fmt.Errorf("ticketfmt: StatePlaintext: %w", err)
	}
	return out, nil
}

// check reports whether p can be encoded.
func (p *PeerIdentity) check() error {
	other := func(field string, set bool) error {
		if set {
			return fmt.Errorf("ticketfmt: PeerIdentity: %s: set for a %v identity", field, p.Type)
		}
		return nil
	}
	certs, psk, spki := len(p.Certificates) > 0, len(p.PSKIdentity) > 0, len(p.PublicKey) > 0
	switch p.Type {
	case Anonymous:
		return errors.Join(other("certificate_list", certs), other("psk_identity", psk), other("subject_public_key_info", spki))
	case CertificateBased:
		total := 0
		for i, c := range p.Certificates {
			if len(c) == 0 || len(c) > maxU24 {
				return fmt.Errorf("ticketfmt: PeerIdentity: certificate_list: certificate %d is %d bytes, not 1..%d", i, len(c), maxU24)
			}
			total += 3 + len(c)
		}
		if total > maxU24 {
			return fmt.Errorf("ticketfmt: PeerIdentity: certificate_list: %d bytes, more than %d", total, maxU24)
		}
		return errors.Join(other("psk_identity", psk), other("subject_public_key_info", spki))
	case PSK:
		if len(p.PSKIdentity) > maxU16 {
			return fmt.Errorf("ticketfmt: PeerIdentity: psk_identity: %d bytes, more than %d", len(p.PSKIdentity), maxU16)
		}
		return errors.Join(other("certificate_list", certs), other("subject_public_key_info", spki))
	case RawPublicKey:
		if len(p.PublicKey) == 0 || len(p.PublicKey) > maxU24 {
			return fmt.Errorf("ticketfmt: PeerIdentity: subject_public_key_info: %d bytes, not 1..%d", len(p.PublicKey), maxU24)
		}
		return errors.Join(other("certificate_list", certs), other("psk_identity", psk))
	default:
		return fmt.Errorf("ticketfmt: PeerIdentity: client_authentication_type: unknown value %d", uint8(p.Type))
	}
}

// marshal appends p to b; p must have passed check.
func (p *PeerIdentity) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Type))
	switch p.Type {
	case CertificateBased:
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range p.Certificates {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
			}
		})
	case PSK:
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.PSKIdentity) })
	case RawPublicKey:
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.PublicKey) })
	}
}

// ParseState decodes a StatePlaintext. It rejects any format_version other
// than FormatVersion, unknown enum values, non-boolean flags and trailing
// bytes; errors name the struct and field and wrap ErrMalformed. The result
// does not alias b.
func ParseState(b []byte) (*State, error) {
	const name = "StatePlaintext"
	s := cryptobyte.String(b)
	var (
		st                              State
		version, ems                    uint8
		ts, created, lifetime, notAfter uint32
		serverName                      cryptobyte.String
	)
	if !s.ReadUint8(&version) {
		return nil, truncated(name, "format_version")
	}
	if version != FormatVersion {
		return nil, malformed(name, "format_version", fmt.Sprintf("unsupported version %d", version))
	}
	switch {
	case !s.ReadUint16(&st.Version):
		return nil, truncated(name, "protocol_version")
	case !s.ReadUint16(&st.CipherSuite):
		return nil, truncated(name, "cipher_suite")
	case !s.ReadUint8(&st.CompressionMethod):
		return nil, truncated(name, "compression_method")
	case !s.CopyBytes(st.MasterSecret[:]):
		return nil, truncated(name, "master_secret")
	}
	if err := parsePeerIdentity(&s, &st.Peer); err != nil {
		return nil, err
	}
	switch {
	case !s.ReadUint32(&ts):
		return nil, truncated(name, "timestamp")
	case !s.ReadUint8(&ems):
		return nil, truncated(name, "extended_master_secret")
	case ems > 1:
		return nil, malformed(name, "extended_master_secret", fmt.Sprintf("value %d is not 0 or 1", ems))
	case !s.ReadUint32(&created):
		return nil, truncated(name, "session_created")
	case !s.ReadUint32(&lifetime):
		return nil, truncated(name, "lifetime")
	case !s.ReadUint32(&notAfter):
		return nil, truncated(name, "cert_not_after")
	case !s.ReadUint16LengthPrefixed(&serverName):
		return nil, truncated(name, "server_name")
	case !s.ReadUint8(&st.ResumptionType):
		return nil, truncated(name, "resumption_type")
	case st.ResumptionType > maxResumptionType:
		return nil, malformed(name, "resumption_type", fmt.Sprintf("unknown value %d", st.ResumptionType))
	case !s.Empty():
		return nil, trailing(name, len(s))
	}
	st.Timestamp = fromUnix(ts)
	st.ExtendedMasterSecret = ems == 1
	st.SessionCreated = fromUnix(created)
	st.Lifetime = time.Duration(lifetime) * time.Second
	st.CertNotAfter = fromUnix(notAfter)
	st.ServerName = string(serverName)
	return &st, nil
}

// parsePeerIdentity reads a PeerIdentity from s into p.
func parsePeerIdentity(s *cryptobyte.String, p *PeerIdentity) error {
	const name = "PeerIdentity"
	var typ uint8
	if !s.ReadUint8(&typ) {
		return truncated(name, "client_authentication_type")
	}
	p.Type = AuthType(typ)
	switch p.Type {
	case Anonymous:
	case CertificateBased:
		var list cryptobyte.String
		if !s.ReadUint24LengthPrefixed(&list) {
			return truncated(name, "certificate_list")
		}
		for !list.Empty() {
			var cert cryptobyte.String
			if !list.ReadUint24LengthPrefixed(&cert) {
				return truncated(name, "certificate_list")
			}
			if len(cert) == 0 {
				return malformed(name, "certificate_list", fmt.Sprintf("certificate %d is empty", len(p.Certificates)))
			}
			p.Certificates = append(p.Certificates, clone(cert))
		}
	case PSK:
		var id cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&id) {
			return truncated(name, "psk_identity")
		}
		p.PSKIdentity = clone(id)
	case RawPublicKey:
		var spki cryptobyte.String
		if !s.ReadUint24LengthPrefixed(&spki) {
			return truncated(name, "subject_public_key_info")
		}
		if len(spki) == 0 {
			return malformed(name, "subject_public_key_info", "empty")
		}
		p.PublicKey = clone(spki)
	default:
		return malformed(name, "client_authentication_type", fmt.Sprintf("unknown value %d", typ))
	}
	return nil
}

// unixSeconds encodes t for a uint32 time field.
func unixSeconds(t time.Time, field string) (uint32, error) {
	if t.IsZero() {
		return 0, nil
	}
	u := t.Unix()
	if u < 1 || u > math.MaxUint32 {
		return 0, fmt.Errorf("ticketfmt: StatePlaintext: %s: %v outside the uint32 unix-seconds range", field, t.UTC())
	}
	return uint32(u), nil
}

// capTime caps a time at the largest uint32 unix second.
func capTime(t time.Time) time.Time {
	if t.Unix() > math.MaxUint32 {
		return time.Unix(math.MaxUint32, 0)
	}
	return t
}

// fromUnix decodes a uint32 time field.
func fromUnix(v uint32) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(int64(v), 0).UTC()
}

func boolByte(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// clone copies b; empty input gives nil.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
