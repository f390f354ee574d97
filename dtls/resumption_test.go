package dtls

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// mapStore is a SessionStore for tests that counts its calls.
type mapStore struct {
	mu         sync.Mutex
	m          map[string][]byte
	gets, puts int
}

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) Get(_ context.Context, k []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	v, ok := s.m[string(k)]
	if !ok {
		return nil, errors.New("not found")
	}
	return v, nil
}

func (s *mapStore) Put(_ context.Context, k, v []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	s.m[string(k)] = append([]byte(nil), v...)
	return nil
}

func (s *mapStore) Delete(_ context.Context, k []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(k))
	return nil
}

func (s *mapStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *mapStore) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = map[string][]byte{}
}

func dialState(t *testing.T, addr net.Addr, cfg *Config) ConnectionState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialContext(ctx, "udp", addr.(*net.UDPAddr), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	echoOnce(t, c, "resume me")
	return c.ConnectionState()
}

func TestResumption(t *testing.T) {
	tc := newTestCert(t)
	for _, kind := range handshakeKinds {
		for _, tickets := range []bool{true, false} {
			name := kind.name + "/session_id"
			want := negotiation.SessionID
			if tickets {
				name, want = kind.name+"/session_ticket", negotiation.SessionTicket
			}
			t.Run(name, func(t *testing.T) {
				scfg := kind.server(tc)
				scfg.SessionStore = newMapStore()
				l := startEchoServer(t, scfg)
				ccfg := kind.client(tc)
				ccfg.ClientSessionCache = NewLRUClientSessionCache(4)
				ccfg.SessionTicketsDisabled = !tickets
				full := dialState(t, l.Addr(), ccfg)
				if full.Resumed || full.Resumption != want {
					t.Fatalf("first handshake: resumed %v by %v, want full with %v", full.Resumed, full.Resumption, want)
				}
				res := dialState(t, l.Addr(), ccfg)
				if !res.Resumed || res.Resumption != want {
					t.Fatalf("second handshake: resumed %v by %v, want %v", res.Resumed, res.Resumption, want)
				}
				// Three datagrams, no cookie round trip.
				if res.HandshakeDatagramsSent != 2 || res.HandshakeDatagramsReceived != 1 {
					t.Errorf("resumption took %d/%d datagrams, want 2/1", res.HandshakeDatagramsSent, res.HandshakeDatagramsReceived)
				}
				if res.HandshakeBytesSent+res.HandshakeBytesReceived >= full.HandshakeBytesSent+full.HandshakeBytesReceived {
					t.Errorf("resumption %d bytes, not fewer than the full handshake's %d",
						res.HandshakeBytesSent+res.HandshakeBytesReceived, full.HandshakeBytesSent+full.HandshakeBytesReceived)
				}
				if res.CipherSuite != full.CipherSuite || res.ExtendedMasterSecret != full.ExtendedMasterSecret {
					t.Errorf("resumed state %+v differs from %+v", res, full)
				}
				if kind.name == "ECDHE-ECDSA-CCM8" && len(res.PeerCertificates) != 1 {
					t.Errorf("resumed session lost the server certificate")
				}
				again := dialState(t, l.Addr(), ccfg)
				if !again.Resumed {
					t.Errorf("third handshake did not resume")
				}
			})
		}
	}
}

// ringClock and serverClock drive the ticket key ring and the server of
// TestResumptionFallbacks.
var ringClock, serverClock atomic.Int64

// TestResumptionFallbacks: everything that makes a session unusable ends
// in a full handshake, never an error.
func TestResumptionFallbacks(t *testing.T) {
	cases := []struct {
		name    string
		tickets bool
		spoil   func(scfg, ccfg *Config, store *mapStore) // scfg only through its clocks: the listener runs
	}{
		{"server forgot the session ID", false, func(_, _ *Config, s *mapStore) { s.clear() }},
		{"ticket key rotated out", true, func(_, _ *Config, _ *mapStore) {
			ringClock.Store(ringClock.Load() + int64(3*time.Hour))
		}},
		{"suite no longer offered", false, func(_, c *Config, _ *mapStore) {
			c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_GCM_SHA256}
		}},
		{"session expired", true, func(_, _ *Config, _ *mapStore) {
			serverClock.Store(serverClock.Load() + int64(25*time.Hour))
		}},
	}
	for _, tcase := range cases {
		t.Run(tcase.name, func(t *testing.T) {
			store := newMapStore()
			scfg := pskServerConfig()
			scfg.SessionStore = store
			serverClock.Store(time.Now().UnixNano())
			scfg.Time = func() time.Time { return time.Unix(0, serverClock.Load()) }
			ringClock.Store(time.Now().UnixNano())
			ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{
				Rotation: time.Hour, TicketLifetime: time.Hour,
				Now: func() time.Time { return time.Unix(0, ringClock.Load()) },
			})
			if err != nil {
				t.Fatal(err)
			}
			scfg.TicketKeys = ring
			l := startEchoServer(t, scfg)
			ccfg := pskClientConfig()
			ccfg.ClientSessionCache = NewLRUClientSessionCache(4)
			ccfg.SessionTicketsDisabled = !tcase.tickets
			if st := dialState(t, l.Addr(), ccfg); st.Resumed {
				t.Fatal("first handshake resumed")
			}
			tcase.spoil(scfg, ccfg, store)
			st := dialState(t, l.Addr(), ccfg)
			if st.Resumed {
				t.Fatal("resumed a spoiled session")
			}
			if st.HandshakeDatagramsSent != 3 {
				t.Errorf("fallback full handshake sent %d datagrams, want 3 (with cookie)", st.HandshakeDatagramsSent)
			}
		})
	}
}

// TestExtendedMasterSecretResumptionRules checks RFC 7627 §5.3 on the
// server: a session without EMS is not resumed by a hello that offers it.
func TestExtendedMasterSecretResumptionRules(t *testing.T) {
	scfg := pskServerConfig()
	scfg.SessionStore = newMapStore()
	l := startEchoServer(t, scfg)
	ccfg := pskClientConfig()
	ccfg.ClientSessionCache = NewLRUClientSessionCache(4)
	ccfg.ExtendedMasterSecret = DisableExtendedMasterSecret
	if st := dialState(t, l.Addr(), ccfg); st.ExtendedMasterSecret {
		t.Fatal("EMS used though disabled")
	}
	if st := dialState(t, l.Addr(), ccfg); !st.Resumed {
		t.Fatal("session without EMS not resumed by a hello without EMS")
	}
	ccfg.ExtendedMasterSecret = RequestExtendedMasterSecret
	st := dialState(t, l.Addr(), ccfg)
	if st.Resumed || !st.ExtendedMasterSecret {
		t.Fatalf("hello with EMS resumed a session without it (resumed=%v ems=%v)", st.Resumed, st.ExtendedMasterSecret)
	}
}

// TestForeignTicket: a ticket another server sealed opens nowhere else; the
// client falls back to a full handshake with a fresh ticket.
func TestForeignTicket(t *testing.T) {
	a := startEchoServer(t, pskServerConfig())
	b := startEchoServer(t, pskServerConfig())
	ccfg := pskClientConfig()
	ccfg.ServerName = "sensor-gateway" // one cache key for both servers
	ccfg.ClientSessionCache = NewLRUClientSessionCache(4)
	dialState(t, a.Addr(), ccfg)
	if st := dialState(t, b.Addr(), ccfg); st.Resumed || st.Resumption != negotiation.SessionTicket {
		t.Fatalf("foreign ticket: resumed=%v resumption=%v", st.Resumed, st.Resumption)
	}
	if st := dialState(t, b.Addr(), ccfg); !st.Resumed {
		t.Fatal("the fresh ticket from server b did not resume")
	}
}

// hangingStore never answers until its context ends, like a network store
// that went down.
type hangingStore struct{}

func (hangingStore) Get(ctx context.Context, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hangingStore) Put(ctx context.Context, _, _ []byte, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

func (hangingStore) Delete(ctx context.Context, _ []byte) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestHangingStoreCostsAFullHandshake: a store that does not answer costs
// a full handshake bounded by the store timeout, never a hung one; the
// observer sees every handshake.
func TestHangingStoreCostsAFullHandshake(t *testing.T) {
	var observed atomic.Int32
	scfg := pskServerConfig()
	scfg.SessionStore = hangingStore{}
	scfg.Resumption = []negotiation.Type{negotiation.SessionID, negotiation.ClientState}
	scfg.HandshakeObserver = func(st ConnectionState, err error) {
		if err == nil && st.CipherSuite != 0 {
			observed.Add(1)
		}
	}
	l := startEchoServer(t, scfg)
	for _, offer := range [][]negotiation.Type{{negotiation.SessionID}, {negotiation.ClientState}} {
		ccfg := pskClientConfig()
		ccfg.Resumption = offer
		ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
		start := time.Now()
		for i := 0; i < 2; i++ {
			if st := dialState(t, l.Addr(), ccfg); st.Resumed {
				t.Fatalf("%v: resumed through a store that never answers", offer)
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v: two handshakes took %v", offer, d)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for observed.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := observed.Load(); n != 4 {
		t.Errorf("observer saw %d successful handshakes, want 4", n)
	}
}
