package dtls

import (
	"bytes"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

func sampleState() *ticketfmt.State {
	st := &ticketfmt.State{
		Version: versionDTLS12, CipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8),
		Peer:      ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("client1")},
		Timestamp: time.Unix(1_800_000_000, 0), SessionCreated: time.Unix(1_800_000_000, 0),
		Lifetime: 24 * time.Hour, ExtendedMasterSecret: true, ResumptionType: uint8(negotiation.SessionTicket),
	}
	copy(st.MasterSecret[:], bytes.Repeat([]byte{7}, 48))
	return st
}

// TestClientSessionRoundTrip covers the encoding behind `dial --session`.
func TestClientSessionRoundTrip(t *testing.T) {
	for _, s := range []*ClientSession{
		{sessionID: bytes.Repeat([]byte{1}, 32), state: sampleState()},
		{ticket: bytes.Repeat([]byte{2}, 140), sessionID: []byte{}, state: sampleState()},
	} {
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseClientSession(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.sessionID, s.sessionID) || !bytes.Equal(got.ticket, s.ticket) || got.state.MasterSecret != s.state.MasterSecret ||
			got.Resumption() != s.Resumption() {
			t.Fatalf("round trip changed the session")
		}
		for i := 0; i < len(b); i++ {
			if _, err := ParseClientSession(b[:i]); err == nil {
				t.Fatalf("truncated at %d parsed", i)
			}
		}
		if _, err := ParseClientSession(append(b, 0)); err == nil {
			t.Fatal("trailing byte parsed")
		}
	}
}

// TestClientStateRecordRoundTrip covers the server's client_state record.
func TestClientStateRecordRoundTrip(t *testing.T) {
	r := &clientStateRecord{ticket: bytes.Repeat([]byte{9}, 150), state: sampleState()}
	b, err := r.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseClientStateRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.ticket, r.ticket) || !got.state.Peer.Equal(&r.state.Peer) {
		t.Fatal("round trip changed the record")
	}
	for i := 0; i < len(b); i++ {
		if _, err := parseClientStateRecord(b[:i]); err == nil {
			t.Fatalf("truncated at %d parsed", i)
		}
	}
}

func FuzzParseClientSession(f *testing.F) {
	for _, s := range []*ClientSession{
		{sessionID: bytes.Repeat([]byte{1}, 32), state: sampleState()},
		{ticket: bytes.Repeat([]byte{2}, 60), state: sampleState()},
	} {
		b, err := s.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseClientSession(data)
		if err != nil {
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("parsed session does not marshal: %v", err)
		}
		if _, err := ParseClientSession(b); err != nil {
			t.Fatalf("re-marshalled session does not parse: %v", err)
		}
	})
}

func FuzzParseClientStateRecord(f *testing.F) {
	b, err := (&clientStateRecord{ticket: bytes.Repeat([]byte{9}, 40), state: sampleState()}).marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{1, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseClientStateRecord(data)
		if err != nil {
			return
		}
		if len(r.ticket) == 0 {
			t.Fatal("empty ticket parsed")
		}
		if _, err := r.marshal(); err != nil {
			t.Fatalf("parsed record does not marshal: %v", err)
		}
	})
}
