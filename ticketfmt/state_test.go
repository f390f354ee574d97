package ticketfmt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

var (
	t0       = time.Unix(1767225600, 0).UTC() // 2026-01-01T00:00:00Z
	testSPKI = unhex("302a300506032b6570032100" + "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	testCert = []byte{0x30, 0x03, 0x02, 0x01, 0x01} // opaque to the codec
)

// testStates returns one state per PeerIdentity type plus edge cases.
func testStates() map[string]*State {
	var ms [48]byte
	for i := range ms {
		ms[i] = byte(i)
	}
	base := func(p PeerIdentity) *State {
		return &State{
			Version: 0xfefd, CipherSuite: 0xc0a8, MasterSecret: ms, Peer: p,
			Timestamp: t0, ExtendedMasterSecret: true, SessionCreated: t0.Add(-time.Hour),
			Lifetime: 24 * time.Hour, ServerName: "coap.example", ResumptionType: 2,
		}
	}
	certState := base(PeerIdentity{Type: CertificateBased, Certificates: [][]byte{testCert, {0x30, 0x00}}})
	certState.CipherSuite = 0xc0ae
	certState.CertNotAfter = t0.Add(365 * 24 * time.Hour)
	longPSK := base(PeerIdentity{Type: PSK, PSKIdentity: bytes.Repeat([]byte{'i'}, maxU16)})
	longPSK.ServerName = strings.Repeat("s", 1000)
	extremes := base(PeerIdentity{Type: RawPublicKey, PublicKey: []byte{0x30}})
	extremes.Timestamp = time.Unix(math.MaxUint32, 0).UTC()
	extremes.SessionCreated = time.Unix(1, 0).UTC()
	extremes.Lifetime = math.MaxUint32 * time.Second
	extremes.CertNotAfter = time.Unix(math.MaxUint32, 0).UTC()
	extremes.ResumptionType = 3
	return map[string]*State{
		"anonymous":         base(PeerIdentity{Type: Anonymous}),
		"certificate_based": certState,
		"certificate_empty": base(PeerIdentity{Type: CertificateBased}),
		"psk":               base(PeerIdentity{Type: PSK, PSKIdentity: []byte("device-0123456789")}),
		"psk_empty":         base(PeerIdentity{Type: PSK}),
		"psk_max":           longPSK,
		"raw_public_key":    base(PeerIdentity{Type: RawPublicKey, PublicKey: testSPKI}),
		"zero_times":        {Peer: PeerIdentity{Type: Anonymous}},
		"extremes":          extremes,
	}
}

func stateEqual(a, b *State) bool {
	return a.Version == b.Version && a.CipherSuite == b.CipherSuite &&
		a.CompressionMethod == b.CompressionMethod && a.MasterSecret == b.MasterSecret &&
		a.Peer.Equal(&b.Peer) && a.Timestamp.Equal(b.Timestamp) &&
		a.ExtendedMasterSecret == b.ExtendedMasterSecret && a.SessionCreated.Equal(b.SessionCreated) &&
		a.Lifetime == b.Lifetime && a.CertNotAfter.Equal(b.CertNotAfter) &&
		a.ServerName == b.ServerName && a.ResumptionType == b.ResumptionType
}

func TestStateRoundTrip(t *testing.T) {
	for name, st := range testStates() {
		t.Run(name, func(t *testing.T) {
			b, err := st.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseState(b)
			if err != nil {
				t.Fatal(err)
			}
			if !stateEqual(st, got) {
				t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", got, st)
			}
			if got.Peer.Type != st.Peer.Type {
				t.Errorf("peer type %v, want %v", got.Peer.Type, st.Peer.Type)
			}
			// Parsed values must not alias the input.
			for i := range b {
				b[i] ^= 0xff
			}
			if !stateEqual(st, got) {
				t.Error("parsed state aliases its input")
			}
			// The encoding is canonical.
			again, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] ^= 0xff
			}
			if !bytes.Equal(again, b) {
				t.Error("re-marshalled state differs")
			}
		})
	}
}

func TestStateEncodingLayout(t *testing.T) {
	st := testStates()["psk"]
	st.ServerName = ""
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	id := []byte("device-0123456789")
	var want []byte
	want = append(want, 1, 0xfe, 0xfd, 0xc0, 0xa8, 0)
	want = append(want, st.MasterSecret[:]...)
	want = append(want, 2, 0, byte(len(id)))
	want = append(want, id...)
	want = append(want, 0x69, 0x55, 0xb9, 0x00) // timestamp 1767225600
	want = append(want, 1)                      // extended_master_secret
	want = append(want, 0x69, 0x55, 0xaa, 0xf0) // session_created = timestamp - 3600
	want = append(want, 0, 1, 0x51, 0x80)       // lifetime 86400
	want = append(want, 0, 0, 0, 0)             // cert_not_after
	want = append(want, 0, 0)                   // server_name
	want = append(want, 2)                      // resumption_type
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding\n got %x\nwant %x", b, want)
	}
}

func TestStateCertNotAfterCapped(t *testing.T) {
	st := testStates()["certificate_based"]
	st.CertNotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) // RFC 5280 "no expiry"
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(math.MaxUint32, 0); !got.CertNotAfter.Equal(want) {
		t.Errorf("CertNotAfter = %v, want %v", got.CertNotAfter, want)
	}
}

func TestStateMarshalErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*State)
		want   string
	}{
		{"unknown auth type", func(s *State) { s.Peer = PeerIdentity{Type: 3} }, "client_authentication_type: unknown value 3"},
		{"anonymous with psk", func(s *State) { s.Peer = PeerIdentity{PSKIdentity: []byte("x")} }, "psk_identity: set for a anonymous identity"},
		{"anonymous with certs", func(s *State) { s.Peer = PeerIdentity{Certificates: [][]byte{testCert}} }, "certificate_list: set for a anonymous"},
		{"psk with key", func(s *State) { s.Peer = PeerIdentity{Type: PSK, PublicKey: testSPKI} }, "subject_public_key_info: set for a psk"},
		{"cert with psk", func(s *State) { s.Peer = PeerIdentity{Type: CertificateBased, PSKIdentity: []byte("x")} }, "psk_identity: set for a certificate_based"},
		{"rpk with certs", func(s *State) {
			s.Peer = PeerIdentity{Type: RawPublicKey, PublicKey: testSPKI, Certificates: [][]byte{testCert}}
		}, "certificate_list: set for a raw_public_key"},
		{"empty certificate", func(s *State) { s.Peer = PeerIdentity{Type: CertificateBased, Certificates: [][]byte{{}}} }, "certificate 0 is 0 bytes"},
		{"certificate list too long", func(s *State) {
			c := make([]byte, 1<<23)
			s.Peer = PeerIdentity{Type: CertificateBased, Certificates: [][]byte{c, c}}
		}, "certificate_list: 16777222 bytes"},
		{"certificate too long", func(s *State) {
			s.Peer = PeerIdentity{Type: CertificateBased, Certificates: [][]byte{make([]byte, 1<<24)}}
		}, "certificate 0 is 16777216 bytes"},
		{"empty public key", func(s *State) { s.Peer = PeerIdentity{Type: RawPublicKey} }, "subject_public_key_info: 0 bytes"},
		{"public key too long", func(s *State) { s.Peer = PeerIdentity{Type: RawPublicKey, PublicKey: make([]byte, 1<<24)} }, "subject_public_key_info: 16777216 bytes"},
		{"psk identity too long", func(s *State) { s.Peer = PeerIdentity{Type: PSK, PSKIdentity: make([]byte, 1<<16)} }, "psk_identity: 65536 bytes"},
		{"server name too long", func(s *State) { s.ServerName = strings.Repeat("a", 1<<16) }, "server_name: 65536 bytes"},
		{"resumption type", func(s *State) { s.ResumptionType = 4 }, "resumption_type: unknown value 4"},
		{"negative lifetime", func(s *State) { s.Lifetime = -time.Second }, "lifetime: -1s out of range"},
		{"lifetime too long", func(s *State) { s.Lifetime = (math.MaxUint32 + 1) * time.Second }, "lifetime:"},
		{"timestamp before 1970", func(s *State) { s.Timestamp = time.Unix(-5, 0) }, "timestamp: 1969-12-31"},
		{"timestamp at epoch", func(s *State) { s.Timestamp = time.Unix(0, 0) }, "timestamp:"},
		{"timestamp after 2106", func(s *State) { s.Timestamp = time.Unix(math.MaxUint32+1, 0) }, "timestamp: 2106"},
		{"session_created after 2106", func(s *State) { s.SessionCreated = time.Unix(1<<33, 0) }, "session_created:"},
		{"cert_not_after before 1970", func(s *State) { s.CertNotAfter = time.Unix(-1, 0) }, "cert_not_after:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := testStates()["anonymous"]
			tt.modify(st)
			b, err := st.Marshal()
			if err == nil {
				t.Fatalf("Marshal succeeded: %x...", b[:min(len(b), 16)])
			}
			if !strings.HasPrefix(err.Error(), "ticketfmt: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// mustMarshal marshals st or fails the test.
func mustMarshal(t testing.TB, st *State) []byte {
	t.Helper()
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStateTruncated(t *testing.T) {
	for name, st := range testStates() {
		if name == "psk_max" {
			continue // 66 KB of prefixes adds nothing over "psk"
		}
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, st)
			for n := range len(b) {
				got, err := ParseState(b[:n])
				if err == nil {
					t.Fatalf("ParseState of %d of %d bytes succeeded: %+v", n, len(b), got)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%d bytes: error %v does not wrap ErrMalformed", n, err)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "ticketfmt: StatePlaintext: ") &&
					!strings.HasPrefix(msg, "ticketfmt: PeerIdentity: ") {
					t.Fatalf("%d bytes: error %q does not name the struct", n, msg)
				}
			}
		})
	}
}

func TestParseStateErrors(t *testing.T) {
	anon := mustMarshal(t, testStates()["anonymous"])
	psk := mustMarshal(t, testStates()["psk"])
	cert := mustMarshal(t, testStates()["certificate_based"])
	rpk := mustMarshal(t, testStates()["raw_public_key"])
	const peerAt = 1 + 2 + 2 + 1 + 48 // offset of peer_identity
	const emsAt = peerAt + 1 + 4      // offset of extended_master_secret in an anonymous state
	set := func(b []byte, at int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[at:], v)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "ticketfmt: StatePlaintext: format_version: truncated"},
		{"format version 0", set(anon, 0, 0), "ticketfmt: StatePlaintext: format_version: unsupported version 0"},
		{"format version 2", set(anon, 0, 2), "ticketfmt: StatePlaintext: format_version: unsupported version 2"},
		{"master secret cut", anon[:30], "ticketfmt: StatePlaintext: master_secret: truncated"},
		{"auth type 3", set(anon, peerAt, 3), "ticketfmt: PeerIdentity: client_authentication_type: unknown value 3"},
		{"auth type 254", set(anon, peerAt, 254), "ticketfmt: PeerIdentity: client_authentication_type: unknown value 254"},
		{"psk length too long", set(psk, peerAt+1, 0xff, 0xff), "ticketfmt: PeerIdentity: psk_identity: truncated"},
		{"certificate list too long", set(cert, peerAt+1, 0xff), "ticketfmt: PeerIdentity: certificate_list: truncated"},
		{"certificate inner length", set(cert, peerAt+4, 0, 0, 9), "ticketfmt: PeerIdentity: certificate_list: truncated"},
		{"empty certificate", set(cert, peerAt+4, 0, 0, 0), "ticketfmt: PeerIdentity: certificate_list: certificate 0 is empty"},
		{"empty public key", append(append(bytes.Clone(anon[:peerAt]), 0xff, 0, 0, 0), anon[peerAt+1:]...),
			"ticketfmt: PeerIdentity: subject_public_key_info: empty"},
		{"public key length too long", set(rpk, peerAt+1, 0x7f), "ticketfmt: PeerIdentity: subject_public_key_info: truncated"},
		{"ems 2", set(anon, emsAt, 2), "ticketfmt: StatePlaintext: extended_master_secret: value 2 is not 0 or 1"},
		{"server name swallows resumption_type", set(anon, len(anon)-1-len("coap.example")-2, 0, 13), "ticketfmt: StatePlaintext: resumption_type: truncated"},
		{"server name length huge", set(anon, len(anon)-1-len("coap.example")-2, 0xff), "ticketfmt: StatePlaintext: server_name: truncated"},
		{"server name length past end", set(anon, len(anon)-1-len("coap.example")-2, 0, 14), "ticketfmt: StatePlaintext: server_name: truncated"},
		{"resumption type 4", set(anon, len(anon)-1, 4), "ticketfmt: StatePlaintext: resumption_type: unknown value 4"},
		{"trailing byte", append(bytes.Clone(anon), 0), "ticketfmt: StatePlaintext: 1 trailing bytes"},
		{"trailing bytes psk", append(bytes.Clone(psk), 1, 2, 3), "ticketfmt: StatePlaintext: 3 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseState(tt.in)
			if err == nil {
				t.Fatalf("ParseState succeeded: %+v", got)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	st := &State{Timestamp: t0, SessionCreated: t0.Add(-6 * 24 * time.Hour), Lifetime: 24 * time.Hour}
	withCert := *st
	withCert.CertNotAfter = t0.Add(time.Hour)
	week := 7 * 24 * time.Hour
	tests := []struct {
		name   string
		st     *State
		now    time.Time
		maxAge time.Duration
		want   bool
	}{
		{"fresh", st, t0, 0, false},
		{"clock behind timestamp", st, t0.Add(-time.Hour), 0, false},
		{"last second of lifetime", st, t0.Add(24*time.Hour - time.Second), 0, false},
		{"lifetime over", st, t0.Add(24 * time.Hour), 0, true},
		{"age within cap", st, t0.Add(23 * time.Hour), week, false},
		{"second before age cap", st, t0.Add(23*time.Hour - time.Second), 6*24*time.Hour + 23*time.Hour, false},
		{"age cap reached", st, t0.Add(23 * time.Hour), 6*24*time.Hour + 23*time.Hour, true},
		{"age cap disabled", st, t0.Add(23 * time.Hour), 0, false},
		{"cert valid", &withCert, t0.Add(time.Hour), 0, false},
		{"cert expired", &withCert, t0.Add(time.Hour + time.Second), 0, true},
		{"zero lifetime", &State{Timestamp: t0, SessionCreated: t0}, t0, week, true},
		{"unset timestamp", &State{Lifetime: 24 * time.Hour, SessionCreated: t0}, t0, 0, true},
		{"unset session_created with cap", &State{Timestamp: t0, Lifetime: time.Hour}, t0, week, true},
		{"unset session_created without cap", &State{Timestamp: t0, Lifetime: time.Hour}, t0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.Expired(tt.now, tt.maxAge); got != tt.want {
				t.Errorf("Expired(%v, %v) = %v, want %v", tt.now, tt.maxAge, got, tt.want)
			}
		})
	}
}

func TestPeerIdentityEqual(t *testing.T) {
	a := &PeerIdentity{Type: PSK, PSKIdentity: []byte("id")}
	tests := []struct {
		name string
		b    *PeerIdentity
		want bool
	}{
		{"same", &PeerIdentity{Type: PSK, PSKIdentity: []byte("id")}, true},
		{"other identity", &PeerIdentity{Type: PSK, PSKIdentity: []byte("ie")}, false},
		{"other type", &PeerIdentity{Type: RawPublicKey, PSKIdentity: []byte("id")}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := a.Equal(tt.b); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !(&PeerIdentity{Type: PSK, PSKIdentity: []byte{}}).Equal(&PeerIdentity{Type: PSK}) {
		t.Error("empty and nil identities differ")
	}
	c1 := &PeerIdentity{Type: CertificateBased, Certificates: [][]byte{testCert}}
	c2 := &PeerIdentity{Type: CertificateBased, Certificates: [][]byte{testCert, testCert}}
	c3 := &PeerIdentity{Type: CertificateBased, Certificates: [][]byte{{0x30, 0x00}}}
	if c1.Equal(c2) || c1.Equal(c3) || !c1.Equal(c1) {
		t.Error("certificate comparison wrong")
	}
	if AuthType(7).String() != "unknown(7)" || RawPublicKey.String() != "raw_public_key" {
		t.Error("AuthType.String wrong")
	}
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
