package interop

import (
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
)

// gnutlsCiphers names each suite's record protection in GnuTLS priority
// strings.
var gnutlsCiphers = map[dtls.CipherSuiteID]string{
	dtls.TLS_PSK_WITH_AES_128_CCM_8:              "AES-128-CCM-8",
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8:      "AES-128-CCM-8",
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256:         "AES-128-GCM",
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "AES-128-GCM",
	dtls.TLS_PSK_WITH_AES_128_CCM:                "AES-128-CCM",
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM:        "AES-128-CCM",
}

// gnutlsGroups names our groups in GnuTLS priority strings.
var gnutlsGroups = map[dtls.CurveID]string{
	dtls.CurveP256:   "GROUP-SECP256R1",
	dtls.CurveX25519: "GROUP-X25519",
	dtls.CurveP384:   "GROUP-SECP384R1",
}

// gnutlsCase is one suite over one group.
type gnutlsCase struct {
	sc    suiteCase
	curve dtls.CurveID
}

// gnutlsCases: every suite over P-256, and the ECDHE-ECDSA CCM_8 suite over
// X25519 and P-384.
func gnutlsCases() []gnutlsCase {
	var out []gnutlsCase
	for _, sc := range suiteCases {
		out = append(out, gnutlsCase{sc, dtls.CurveP256})
	}
	return append(out, gnutlsCase{suiteCases[1], dtls.CurveX25519}, gnutlsCase{suiteCases[1], dtls.CurveP384})
}

// priority restricts GnuTLS to the case's key exchange, cipher and group.
func (gc gnutlsCase) priority() string {
	kx := "+ECDHE-ECDSA"
	if gc.sc.psk {
		kx = "+PSK"
	}
	groups := ":-GROUP-ALL:+" + gnutlsGroups[gc.curve]
	if gc.curve != dtls.CurveP256 {
		// After the group for ECDHE, the test certificate's curve: a server
		// signs only with a curve the client lists (RFC 8422 §5.1).
		groups += ":+" + gnutlsGroups[dtls.CurveP256]
	}
	return "NORMAL:-KX-ALL:" + kx + ":-CIPHER-ALL:+" + gnutlsCiphers[gc.sc.ours] + groups
}

func (gc gnutlsCase) String() string { return gc.sc.ours.String() + "/" + gc.curve.String() }

// TestSuitesAndCurvesOurClientGnuTLSServer: our client against gnutls-serv
// restricted to one suite and one group, for every suite and group.
func TestSuitesAndCurvesOurClientGnuTLSServer(t *testing.T) {
	serv := peers.Require(t, "gnutls-serv")
	p := testpki.New(t)
	pskFile := filepath.Join(t.TempDir(), "psk.txt")
	if err := os.WriteFile(pskFile, []byte(pskIdentity+":"+hex.EncodeToString(psk)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, gc := range gnutlsCases() {
		t.Run(gc.String(), func(t *testing.T) {
			port := peers.FreeUDPPort(t)
			args := []string{"--udp", "-p", strconv.Itoa(port), "--echo", "--priority", gc.priority()}
			if gc.sc.psk {
				args = append(args, "--pskpasswd", pskFile)
			} else {
				args = append(args, "--x509certfile", p.CertFile, "--x509keyfile", p.KeyFile)
			}
			peers.Start(t, serv, args...)
			peers.WaitUDPListening(t, port, 10*time.Second)
			cfg := ourClient(gc.sc, p.Pool)
			cfg.CurvePreferences = []dtls.CurveID{gc.curve, dtls.CurveP256}
			c := dialOurs(t, "handshake with gnutls-serv", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, cfg)
			defer c.Close()
			roundTrip(t, c, "to gnutls "+gc.String())
			st := c.ConnectionState()
			if st.CipherSuite != gc.sc.ours || (!gc.sc.psk && st.Curve != gc.curve) {
				t.Fatalf("gnutls-serv chose %v over %v", st.CipherSuite, st.Curve)
			}
		})
	}
}

// TestSuitesAndCurvesGnuTLSClientOurServer: gnutls-cli restricted to one
// suite and one group against our server offering all of them.
func TestSuitesAndCurvesGnuTLSClientOurServer(t *testing.T) {
	cli := peers.Require(t, "gnutls-cli")
	p := testpki.New(t)
	l, err := dtls.Listen("udp", loopback(), &dtls.Config{Certificates: []tls.Certificate{p.Cert},
		PSK: func([]byte) ([]byte, error) { return psk, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan dtls.ConnectionState, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*dtls.Conn).ConnectionState()
			go dtlstest.Echo(c)
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.UDPAddr).Port)
	for _, gc := range gnutlsCases() {
		t.Run(gc.String(), func(t *testing.T) {
			args := []string{"--udp", "-p", port, "127.0.0.1", "--priority", gc.priority()}
			if gc.sc.psk {
				args = append(args, "--pskusername", pskIdentity, "--pskkey", hex.EncodeToString(psk))
			} else {
				args = append(args, "--x509cafile", p.CAFile, "--verify-hostname", "localhost")
			}
			g := peers.Start(t, cli, args...)
			defer g.Stop()
			select {
			case st := <-accepted:
				if st.CipherSuite != gc.sc.ours || (!gc.sc.psk && st.Curve != gc.curve) {
					t.Fatalf("our server chose %v over %v", st.CipherSuite, st.Curve)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("gnutls-cli: no handshake:\n%s", g.Output())
			}
			if err := g.WriteStdin("ping " + gc.String() + "\n"); err != nil {
				t.Fatal(err)
			}
			if err := g.WaitFor("ping "+gc.String(), 10*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}
