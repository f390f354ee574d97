package dtls

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// TestClientStateRefreshExtendsTheRecord: a client that refreshed its
// ticket at +13 h still resumes at +25 h: the server's record lives from
// the refresh, like the client's new ticket.
func TestClientStateRefreshExtendsTheRecord(t *testing.T) {
	clock := &fakeClock{}
	scfg := withClock(pskServerConfig(), clock)
	scfg.SessionStore = newMapStore()
	scfg.Resumption = []negotiation.Type{negotiation.ClientState}
	l := startEchoServer(t, scfg)
	ccfg := withClock(pskClientConfig(), clock)
	ccfg.Resumption = []negotiation.Type{negotiation.ClientState}
	for i, at := range []time.Duration{0, 13 * time.Hour, 12 * time.Hour} {
		clock.advance(at)
		c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if st := c.ConnectionState(); st.Resumed != (i > 0) {
			t.Fatalf("dial %d (+%v): resumed=%v", i, time.Duration(clock.offset.Load()), st.Resumed)
		}
		c.Close()
	}
}

// failingStore fails every Get, as a Redis that times out, and records Puts.
type failingStore struct {
	mu   sync.Mutex
	puts map[string][]byte
}

func (s *failingStore) Get(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("i/o timeout")
}

func (s *failingStore) Put(_ context.Context, k, v []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts[string(k)] = v
	return nil
}

func (s *failingStore) Delete(context.Context, []byte) error { return nil }

// TestHandleTakeoverFailsClosed: a server stores a client_state record only
// under a handle that names the authenticated client, whatever the store
// answers: with every Get failing, bob cannot store under alice's handle,
// and alice can.
func TestHandleTakeoverFailsClosed(t *testing.T) {
	store := &failingStore{puts: map[string][]byte{}}
	cfg := pskServerConfig()
	cfg.SessionStore = store
	c := newConn(nil, &net.UDPAddr{IP: loopback1, Port: 1}, cfg, false)
	alice := pskClientConfig()
	alice.PSKIdentityHint = []byte("alice")
	handle, err := alice.clientStateHandle("psk:alice")
	if err != nil {
		t.Fatal(err)
	}
	state := func(identity string) *ticketfmt.State {
		return &ticketfmt.State{Version: versionDTLS12, CipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8),
			Peer: ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte(identity)}, Timestamp: time.Now(), SessionCreated: time.Now(), Lifetime: time.Hour}
	}
	nst := &newSessionTicketMsg{lifetimeHint: 3600, ticket: []byte("sealed")}
	c.storeClientState(context.Background(), handle[:], nst, state("bob"))
	if len(store.puts) != 0 {
		t.Fatal("bob's record was stored under alice's handle")
	}
	c.storeClientState(context.Background(), handle[:], nst, state("alice"))
	if _, ok := store.puts[string(clientStateKeyName(handle[:]))]; !ok {
		t.Fatal("alice's own record was not stored")
	}
}

// TestShortPSKRefusedForClientState: a client_state key is not derived from
// a PSK shorter than 16 bytes unless the operator says so.
func TestShortPSKRefusedForClientState(t *testing.T) {
	cfg := pskClientConfig()
	cfg.PSK = func([]byte) ([]byte, error) { return []byte("short"), nil }
	cfg.Resumption = []negotiation.Type{negotiation.ClientState}
	if err := cfg.validate(true); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Fatalf("validate: %v, want a refusal that says why", err)
	}
	cfg.AllowShortClientStatePSK = true
	if err := cfg.validate(true); err != nil {
		t.Fatalf("with AllowShortClientStatePSK: %v", err)
	}
}
