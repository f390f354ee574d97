package interop

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
)

// cbcTampers change one protected application_data record (13-byte header,
// then IV || ciphertext [|| MAC]) the way a padding-oracle attacker would.
var cbcTampers = []struct {
	name string
	f    func(rec []byte) []byte
}{
	// The byte before the last block: in the last plaintext block it flips
	// padding_length (MAC-then-encrypt), or it breaks the MAC
	// (encrypt-then-MAC, where the last 32 bytes are the MAC).
	{"padding", func(rec []byte) []byte { rec[len(rec)-17] ^= 0x01; return rec }},
	// A byte of the first ciphertext block: content and MAC no longer agree.
	{"MAC", func(rec []byte) []byte { rec[13+16] ^= 0x80; return rec }},
	// One block fewer, the header's length fixed up: a well-formed record.
	{"truncated", func(rec []byte) []byte {
		rec = rec[:len(rec)-16]
		n := len(rec) - 13
		rec[11], rec[12] = byte(n>>8), byte(n)
		return rec
	}},
}

// TestCBCTamperedRecordsAllLookAlike: through a relay that tampers with one
// of the client's application_data records, our server answers a bad
// padding, a bad MAC and a truncated record alike: no alert, nothing at all
// on the wire, and the connection goes on (RFC 6347 §4.1.2.7). Against
// pion's client (MAC-then-encrypt) and ours (encrypt-then-MAC).
func TestCBCTamperedRecordsAllLookAlike(t *testing.T) {
	for _, etm := range []bool{false, true} {
		for _, tamper := range cbcTampers {
			t.Run(fmt.Sprintf("etm=%v/%s", etm, tamper.name), func(t *testing.T) {
				l, err := dtls.Listen("udp", loopback(), ourServer(cbcSuites[0], tls.Certificate{}))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				accepted := acceptOne(l)
				var armed atomic.Bool
				var mu sync.Mutex
				var fromServer int
				proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{
					Rewrite: func(dir lossyproxy.Direction, d []byte) []byte {
						if dir == lossyproxy.ToClient {
							mu.Lock()
							fromServer++
							mu.Unlock()
							return d
						}
						if len(d) > 13+32 && d[0] == 23 && armed.CompareAndSwap(true, false) {
							return tamper.f(append([]byte(nil), d...))
						}
						return d
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer proxy.Close()
				var c net.Conn
				if etm {
					c = dialOurs(t, "our client", proxy.Addr(), ourClient(cbcSuites[0], nil))
				} else {
					c = pionDial(t, proxy.Addr(), pionClient(cbcSuites[0], nil))
				}
				defer c.Close()
				roundTrip(t, c, "before")
				checkCBC(t, "our server", <-accepted, cbcSuites[0], etm)

				mu.Lock()
				before := fromServer
				mu.Unlock()
				armed.Store(true)
				if _, err := c.Write([]byte("tampered on the way")); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if n, err := c.Read(make([]byte, 100)); err == nil {
					t.Fatalf("the tampered record was answered (%d bytes)", n)
				}
				mu.Lock()
				after := fromServer
				mu.Unlock()
				if armed.Load() || after != before {
					t.Fatalf("tampered=%v, %d datagrams from the server after it", !armed.Load(), after-before)
				}
				roundTrip(t, c, "after")
			})
		}
	}
}
