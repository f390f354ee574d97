package dtls

import (
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// TestClientStateResumption: a client_state client keeps nothing between
// connections (every dial below uses a brand-new Config, as a new process
// would), yet resumes in three datagrams because the server holds its
// sealed ticket.
func TestClientStateResumption(t *testing.T) {
	tc := newTestCert(t)
	for _, kind := range handshakeKinds {
		t.Run(kind.name, func(t *testing.T) {
			store := newMapStore()
			scfg := kind.server(tc)
			scfg.SessionStore = store
			l := startEchoServer(t, scfg)
			freshClient := func() *Config {
				c := kind.client(tc)
				c.Resumption = []negotiation.Type{negotiation.ClientState}
				if c.PSK == nil {
					c.ClientStateKey = []byte("0123456789abcdef")
				}
				return c
			}
			full := dialState(t, l.Addr(), freshClient())
			if full.Resumed || full.Resumption != negotiation.ClientState || !full.Negotiated {
				t.Fatalf("first: resumed=%v resumption=%v negotiated=%v", full.Resumed, full.Resumption, full.Negotiated)
			}
			if full.ResumptionStateBytes != 0 {
				t.Errorf("client keeps %d bytes in client_state mode", full.ResumptionStateBytes)
			}
			if store.len() != 1 {
				t.Fatalf("server holds %d records, want 1", store.len())
			}
			for i := 0; i < 2; i++ {
				res := dialState(t, l.Addr(), freshClient())
				if !res.Resumed || res.Resumption != negotiation.ClientState {
					t.Fatalf("resume %d: resumed=%v resumption=%v", i, res.Resumed, res.Resumption)
				}
				if res.HandshakeDatagramsSent != 2 || res.HandshakeDatagramsReceived != 1 {
					t.Errorf("resume %d: %d/%d datagrams, want 2/1", i, res.HandshakeDatagramsSent, res.HandshakeDatagramsReceived)
				}
				if res.CipherSuite != full.CipherSuite || !res.ExtendedMasterSecret {
					t.Errorf("resumed state %+v", res)
				}
			}
			if store.len() != 1 {
				t.Fatalf("server holds %d records after resumptions, want 1", store.len())
			}
		})
	}
}

// TestResumptionAttempted: both sides report what the ClientHello tried to
// resume by, so a miss can be told from a hit.
func TestResumptionAttempted(t *testing.T) {
	var server []ConnectionState
	var mu sync.Mutex
	scfg := pskServerConfig()
	scfg.SessionStore = newMapStore()
	scfg.HandshakeObserver = func(st ConnectionState, err error) {
		mu.Lock()
		defer mu.Unlock()
		server = append(server, st)
	}
	l := startEchoServer(t, scfg)
	ccfg := pskClientConfig()
	ccfg.Resumption = []negotiation.Type{negotiation.SessionID}
	ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
	first := dialState(t, l.Addr(), ccfg)
	second := dialState(t, l.Addr(), ccfg)
	if first.ResumptionAttempted != negotiation.None || second.ResumptionAttempted != negotiation.SessionID || !second.Resumed {
		t.Fatalf("client: first %v, second %v resumed=%v", first.ResumptionAttempted, second.ResumptionAttempted, second.Resumed)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(server)
		mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(server) != 2 || server[0].ResumptionAttempted != negotiation.None || server[1].ResumptionAttempted != negotiation.SessionID {
		t.Fatalf("server saw %+v", server)
	}
}
