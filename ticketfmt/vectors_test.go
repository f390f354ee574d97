package ticketfmt

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ticketfmt/vectors.json")

var vectorsPath = filepath.Join("..", "testdata", "ticketfmt", "vectors.json")

// vectorFile is testdata/ticketfmt/vectors.json: tickets sealed with fixed
// keys and nonces, for other implementations and for catching format drift.
type vectorFile struct {
	Description string   `json:"description"`
	Vectors     []vector `json:"vectors"`
}

type vector struct {
	Name           string      `json:"name"`
	Key            string      `json:"key"`
	KeyName        string      `json:"key_name"`
	Nonce          string      `json:"nonce"`
	Label          string      `json:"label"`
	StatePlaintext string      `json:"state_plaintext"`
	Ticket         string      `json:"ticket"`
	State          vectorState `json:"state"`
}

// vectorState is the decoded StatePlaintext under its wire field names;
// times are unix seconds, lifetime seconds, byte strings hex.
type vectorState struct {
	FormatVersion        int        `json:"format_version"`
	ProtocolVersion      uint16     `json:"protocol_version"`
	CipherSuite          uint16     `json:"cipher_suite"`
	CompressionMethod    uint8      `json:"compression_method"`
	MasterSecret         string     `json:"master_secret"`
	PeerIdentity         vectorPeer `json:"peer_identity"`
	Timestamp            int64      `json:"timestamp"`
	ExtendedMasterSecret bool       `json:"extended_master_secret"`
	SessionCreated       int64      `json:"session_created"`
	Lifetime             int64      `json:"lifetime"`
	CertNotAfter         int64      `json:"cert_not_after"`
	ServerName           string     `json:"server_name"`
	ResumptionType       uint8      `json:"resumption_type"`
}

type vectorPeer struct {
	ClientAuthenticationType uint8    `json:"client_authentication_type"`
	CertificateList          []string `json:"certificate_list,omitempty"`
	PSKIdentity              string   `json:"psk_identity,omitempty"`
	SubjectPublicKeyInfo     string   `json:"subject_public_key_info,omitempty"`
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func encodeVectorState(s *State) vectorState {
	p := vectorPeer{
		ClientAuthenticationType: uint8(s.Peer.Type),
		PSKIdentity:              hex.EncodeToString(s.Peer.PSKIdentity),
		SubjectPublicKeyInfo:     hex.EncodeToString(s.Peer.PublicKey),
	}
	for _, c := range s.Peer.Certificates {
		p.CertificateList = append(p.CertificateList, hex.EncodeToString(c))
	}
	return vectorState{
		FormatVersion: FormatVersion, ProtocolVersion: s.Version, CipherSuite: s.CipherSuite,
		CompressionMethod: s.CompressionMethod, MasterSecret: hex.EncodeToString(s.MasterSecret[:]),
		PeerIdentity: p, Timestamp: unixOrZero(s.Timestamp), ExtendedMasterSecret: s.ExtendedMasterSecret,
		SessionCreated: unixOrZero(s.SessionCreated), Lifetime: int64(s.Lifetime / time.Second),
		CertNotAfter: unixOrZero(s.CertNotAfter), ServerName: s.ServerName, ResumptionType: s.ResumptionType,
	}
}

// buildVectors seals fixed states under fixed keys and nonces.
func buildVectors(t *testing.T) []byte {
	var ms [48]byte
	for i := range ms {
		ms[i] = 0xa0 + byte(i%16)
	}
	created := time.Unix(1767225600, 0).UTC() // 2026-01-01T00:00:00Z
	sealed := created.Add(2 * time.Hour)
	cases := []struct {
		name, label string
		key, nonce  string
		state       State
	}{
		{"server-anonymous", LabelServer, "000102030405060708090a0b0c0d0e0f", "101112131415161718191a1b", State{
			Version: 0xfefd, CipherSuite: 0xc02b, MasterSecret: ms, Peer: PeerIdentity{Type: Anonymous},
			Timestamp: sealed, ExtendedMasterSecret: true, SessionCreated: created, Lifetime: 24 * time.Hour,
			ResumptionType: 2,
		}},
		{"server-certificate", LabelServer, "000102030405060708090a0b0c0d0e0f", "202122232425262728292a2b", State{
			Version: 0xfefd, CipherSuite: 0xc0ae, MasterSecret: ms,
			Peer:      PeerIdentity{Type: CertificateBased, Certificates: [][]byte{testCert, {0x30, 0x00}}},
			Timestamp: sealed, ExtendedMasterSecret: true, SessionCreated: created, Lifetime: 24 * time.Hour,
			CertNotAfter: created.Add(365 * 24 * time.Hour), ResumptionType: 2,
		}},
		{"client-psk", LabelClient, "f0e0d0c0b0a090807060504030201000", "303132333435363738393a3b", State{
			Version: 0xfefd, CipherSuite: 0xc0a8, MasterSecret: ms,
			Peer:      PeerIdentity{Type: PSK, PSKIdentity: []byte("0123456789abcdef")},
			Timestamp: sealed, ExtendedMasterSecret: true, SessionCreated: created, Lifetime: 24 * time.Hour,
			ServerName: "coap.example", ResumptionType: 3,
		}},
		{"client-raw-public-key", LabelClient, "f0e0d0c0b0a090807060504030201000", "404142434445464748494a4b", State{
			Version: 0xfefd, CipherSuite: 0xc0ae, MasterSecret: ms,
			Peer:      PeerIdentity{Type: RawPublicKey, PublicKey: testSPKI},
			Timestamp: sealed, ExtendedMasterSecret: false, SessionCreated: created, Lifetime: time.Hour,
			ServerName: "coap.example", ResumptionType: 3,
		}},
	}
	file := vectorFile{
		Description: "ticketfmt CcmTicket vectors: ticket = key_name(16) || nonce(12) || uint16 len || " +
			"AES-128-CCM(aead_key, nonce, aad = key_name || label, state_plaintext) with a 16-byte tag; " +
			"aead_key = HKDF-SHA256(key, no salt, \"ticketfmt aead key v1\", 16); " +
			"key_name = HMAC-SHA256(HKDF-SHA256(key, no salt, \"ticketfmt key name key v1\", 32), \"key name\")[0:16]. " +
			"Regenerate: go test ./ticketfmt -run TestVectors -update",
	}
	for _, c := range cases {
		k := mustKey(t, unhex(c.key))
		plain := mustMarshal(t, &c.state)
		ticket, err := k.sealWithNonce(plain, c.label, [NonceSize]byte(unhex(c.nonce)))
		if err != nil {
			t.Fatal(err)
		}
		file.Vectors = append(file.Vectors, vector{
			Name: c.name, Key: c.key, KeyName: hex.EncodeToString(k.Name[:]), Nonce: c.nonce, Label: c.label,
			StatePlaintext: hex.EncodeToString(plain), Ticket: hex.EncodeToString(ticket),
			State: encodeVectorState(&c.state),
		})
	}
	out, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestVectors(t *testing.T) {
	want := buildVectors(t)
	if *update {
		if err := os.WriteFile(vectorsPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date or the format changed (regenerate with -update if intended)", vectorsPath)
	}

	// Check the file on its own terms: every ticket opens under its key to
	// its plaintext, which decodes to the listed fields.
	var file vectorFile
	if err := json.Unmarshal(got, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 4 {
		t.Fatalf("only %d vectors", len(file.Vectors))
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			k := mustKey(t, unhex(v.Key))
			if hex.EncodeToString(k.Name[:]) != v.KeyName {
				t.Errorf("key_name %s, derived %x", v.KeyName, k.Name)
			}
			ticket := unhex(v.Ticket)
			name, nonce, _, err := ParseTicket(ticket)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(name[:]) != v.KeyName || hex.EncodeToString(nonce[:]) != v.Nonce {
				t.Errorf("ticket fields %x %x", name, nonce)
			}
			plain, err := k.Open(ticket, v.Label)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(plain) != v.StatePlaintext {
				t.Errorf("opened plaintext differs")
			}
			aad := append(unhex(v.KeyName), v.Label...)
			aeadKey, err := hkdf.Key(sha256.New, unhex(v.Key), nil, "ticketfmt aead key v1", KeySize)
			if err != nil {
				t.Fatal(err)
			}
			if sealed := refCCM(aeadKey, nonce[:], aad, plain, TagSize); !bytes.Equal(sealed, ticket[KeyNameSize+NonceSize+2:]) {
				t.Errorf("reference CCM disagrees with the ticket")
			}
			st, err := ParseState(plain)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeVectorState(st); !equalJSON(t, got, v.State) {
				t.Errorf("decoded state %+v, file says %+v", got, v.State)
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
