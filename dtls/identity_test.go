package dtls

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// revocableKeys is a server's PSK table from which identities can be
// withdrawn.
type revocableKeys struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (k *revocableKeys) psk(id []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if string(id) != "client1" || k.revoked[string(id)] {
		return nil, errUnknownIdentity
	}
	return testPSK, nil
}

func (k *revocableKeys) revoke(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.revoked[id] = true
}

// TestRevokedIdentityDoesNotResume: once the server's PSK callback refuses
// an identity, its sessions of every resumption type stop resuming; the full
// handshake that follows fails.
func TestRevokedIdentityDoesNotResume(t *testing.T) {
	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		t.Run(typ.String(), func(t *testing.T) {
			keys := &revocableKeys{revoked: map[string]bool{}}
			scfg := pskServerConfig()
			scfg.PSK = keys.psk
			scfg.SessionStore = newMapStore()
			scfg.Resumption = []negotiation.Type{typ}
			l := startEchoServer(t, scfg)
			ccfg := pskClientConfig()
			ccfg.Resumption = []negotiation.Type{typ}
			ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
			ccfg.HandshakeTimeout = 5 * time.Second
			for i := range 2 {
				c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
				if err != nil {
					t.Fatal(err)
				}
				if c.ConnectionState().Resumed != (i == 1) {
					t.Fatalf("dial %d: resumed=%v", i, c.ConnectionState().Resumed)
				}
				c.Close()
			}
			keys.revoke("client1")
			c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
			if err == nil {
				st := c.ConnectionState()
				c.Close()
				t.Fatalf("a revoked identity connected (resumed=%v)", st.Resumed)
			}
			var ae *AlertError
			if !errors.As(err, &ae) || !ae.Remote {
				t.Fatalf("err = %v, want the server's alert", err)
			}
		})
	}
}

// TestUnknownIdentityLooksLikeAWrongKey: identities cannot be enumerated.
// A client with an unknown identity and one with a known identity but a
// wrong key get the same alert after the same exchange (the same number of
// flights each way); only the server's own report tells them apart.
func TestUnknownIdentityLooksLikeAWrongKey(t *testing.T) {
	type outcome struct {
		alert            string
		flightsSent      int
		messagesReceived int
	}
	run := func(mutate func(*Config)) (outcome, Reason) {
		var mu sync.Mutex
		var srvErr error
		scfg := pskServerConfig()
		scfg.HandshakeObserver = func(_ ConnectionState, err error) { mu.Lock(); srvErr = err; mu.Unlock() }
		l := startEchoServer(t, scfg)
		ccfg := pskClientConfig()
		mutate(ccfg)
		var o outcome
		ccfg.Trace = func(ev TraceEvent) {
			switch {
			case ev.Sent && ev.Message == "Finished":
				o.flightsSent++
			case !ev.Sent:
				o.messagesReceived++
			}
		}
		_, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
		var ae *AlertError
		if !errors.As(err, &ae) || !ae.Remote {
			t.Fatalf("err = %v, want the server's alert", err)
		}
		o.alert = alertDescription(ae.Description).String()
		waitFor(t, "the server's report", func() bool { mu.Lock(); defer mu.Unlock(); return srvErr != nil })
		mu.Lock()
		defer mu.Unlock()
		r, _ := ReasonOf(srvErr)
		return o, r
	}
	unknown, unknownReason := run(func(c *Config) { c.PSKIdentityHint = []byte("nobody") })
	wrong, wrongReason := run(func(c *Config) { c.PSK = func([]byte) ([]byte, error) { return []byte("another key"), nil } })
	if unknown != wrong {
		t.Fatalf("an unknown identity is told apart from a wrong key: %+v vs %+v", unknown, wrong)
	}
	if unknown.alert != "decrypt_error" {
		t.Fatalf("alert %s, want decrypt_error", unknown.alert)
	}
	if unknownReason != ReasonUnknownIdentity || wrongReason != ReasonBadKey {
		t.Fatalf("the server's reasons: %q and %q", unknownReason, wrongReason)
	}
}
