package dtls

import (
	"net"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
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
