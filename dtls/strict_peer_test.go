package dtls

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
	"github.com/dtlsresume/dtlsresume/negotiation"
)

// firstMessageOnly plays a peer that reads only the first handshake message
// of each plaintext handshake record: whatever else a record carries is cut
// away before it is delivered. Protected records pass unchanged (they carry
// one Finished).
func firstMessageOnly(_ lossyproxy.Direction, d []byte) []byte {
	recs, _ := parseRecords(d)
	var out []byte
	for _, r := range recs {
		if r.contentType != recordHandshake || r.epoch != 0 {
			out = append(out, r.raw...)
			continue
		}
		frags, _ := parseHandshakeFragments(r.fragment)
		if len(frags) == 0 {
			continue
		}
		f := frags[0]
		msg := marshalHandshakeHeader(nil, f.msgType, int(f.length), f.seq, int(f.offset), len(f.data))
		msg = append(msg, f.data...)
		out = append(out, plainRecord(recordHandshake, 0, r.seq, msg)...)
	}
	return out
}

// TestStrictPeersReadEveryFlight: every flight of every handshake kind, from
// both sides, survives a peer that reads one handshake message per record,
// so each message must travel in a record of its own (docs/decisions.md 7).
func TestStrictPeersReadEveryFlight(t *testing.T) {
	cert := newTestCert(t)
	pskPlus := func(policy ...negotiation.Type) (*Config, *Config) {
		s, c := pskServerConfig(), pskClientConfig()
		s.SessionStore = newMapStore()
		s.Resumption, c.Resumption = policy, policy
		s.PSKIdentityHint = []byte("hint: a ServerKeyExchange in flight 4")
		return s, c
	}
	ecdhe := func() (*Config, *Config) {
		s := &Config{Certificates: []tls.Certificate{cert.cert}, ClientAuth: RequireAnyClientCert, SessionStore: newMapStore(),
			CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
		c := &Config{RootCAs: cert.pool, ServerName: "localhost", Certificates: []tls.Certificate{cert.cert},
			CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
		return s, c
	}
	cases := []struct {
		name   string
		cfgs   func() (*Config, *Config)
		dials  int
		resume bool // the dials after the first resume
		later  time.Duration
		// nst is the NewSessionTicket the resumed client must see: "<<<"
		// received (a renewed ticket), ">>>" sent (a refreshed client_state).
		nst string
	}{
		{"PSK full handshake with a hint", func() (*Config, *Config) { return pskPlus() }, 1, false, 0, ""},
		{"ECDHE with a client certificate, then resumed", ecdhe, 2, true, 0, ""},
		{"session_id", func() (*Config, *Config) { return pskPlus(negotiation.SessionID) }, 2, true, 0, ""},
		{"session_ticket, renewed on resumption", func() (*Config, *Config) { return pskPlus(negotiation.SessionTicket) }, 2, true, 13 * time.Hour, "<<<"},
		{"client_state, refreshed on resumption", func() (*Config, *Config) { return pskPlus(negotiation.ClientState) }, 2, true, 13 * time.Hour, ">>>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scfg, ccfg := tc.cfgs()
			scfg.RetransmitInterval, ccfg.RetransmitInterval = 50*time.Millisecond, 50*time.Millisecond
			clock := &fakeClock{}
			scfg.Time, ccfg.Time = clock.now, clock.now
			ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
			l := startEchoServer(t, scfg)
			proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{Rewrite: firstMessageOnly})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			for i := range tc.dials {
				var nsts []string
				ccfg.Trace = func(ev TraceEvent) {
					if ev.Message == "NewSessionTicket" {
						nsts = append(nsts, map[bool]string{true: ">>>", false: "<<<"}[ev.Sent])
					}
				}
				if i > 0 {
					clock.advance(tc.later) // past half the lifetime: renew or refresh
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				c, err := DialContext(ctx, "udp", proxy.Addr(), ccfg)
				cancel()
				if err != nil {
					t.Fatalf("dial %d through a one-message-per-record peer: %v", i, err)
				}
				if st := c.ConnectionState(); st.Resumed != (tc.resume && i > 0) {
					t.Errorf("dial %d: resumed=%v", i, st.Resumed)
				}
				if i > 0 && tc.nst != "" && (len(nsts) != 1 || nsts[0] != tc.nst) {
					t.Errorf("dial %d: NewSessionTicket %v, want %s one", i, nsts, tc.nst)
				}
				echoOnce(t, c, "strict")
				c.Close()
			}
		})
	}
}
