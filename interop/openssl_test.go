package interop

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
)

// opensslName is the OpenSSL cipher string of a suite.
func opensslName(id dtls.CipherSuiteID) string { return id.OpenSSLName() }

// opensslCipher is the -cipher argument: OpenSSL 3 puts the CCM-8 suites
// below some security levels, hence @SECLEVEL=0 (harmless for the others).
func opensslCipher(id dtls.CipherSuiteID) string { return id.OpenSSLName() + "@SECLEVEL=0" }

// sClientArgs are openssl s_client's arguments for suite sc against addr,
// with the PSK or our test CA.
func sClientArgs(addr string, sc suiteCase, p *testpki.PKI) []string {
	args := []string{"s_client", "-dtls1_2", "-connect", addr, "-cipher", opensslCipher(sc.ours)}
	if sc.psk {
		return append(args, "-psk", hex.EncodeToString(psk), "-psk_identity", pskIdentity)
	}
	return append(args, "-CAfile", p.CAFile, "-verify_return_error")
}

// startSServer starts openssl s_server for suite sc on a free port, to
// accept naccept connections, and waits until it listens.
func startSServer(t *testing.T, openssl string, sc suiteCase, p *testpki.PKI, naccept int, extra ...string) (*peers.Process, int) {
	t.Helper()
	port := peers.FreeUDPPort(t)
	args := []string{"s_server", "-dtls1_2", "-accept", "127.0.0.1:" + strconv.Itoa(port), "-cipher", opensslCipher(sc.ours),
		"-naccept", strconv.Itoa(naccept)}
	if sc.psk {
		args = append(args, "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", pskIdentity)
	} else {
		args = append(args, "-cert", p.CertFile, "-key", p.KeyFile)
	}
	srv := peers.Start(t, openssl, append(args, extra...)...)
	peers.WaitUDPListening(t, port, 10*time.Second)
	return srv, port
}

func ourServerConfig(p *testpki.PKI, sc suiteCase) *dtls.Config { return ourServer(sc, p.Cert) }

// TestOpenSSLClientOurServer: openssl s_client -dtls1_2 against our
// Listener, every suite; the echoed line must come back to s_client.
func TestOpenSSLClientOurServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			l, err := dtls.Listen("udp", loopback(), ourServerConfig(p, sc))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := acceptOne(l)
			cl := peers.Start(t, openssl, sClientArgs(l.Addr().String(), sc, p)...)
			if err := cl.WaitFor("New, TLSv1.2, Cipher is "+opensslName(sc.ours), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := cl.WriteStdin("ping from openssl\n"); err != nil {
				t.Fatal(err)
			}
			// s_client does not print its own input, so the line showing up
			// in its output is our server's echo.
			if err := cl.WaitFor("ping from openssl", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			select {
			case st := <-accepted:
				if st.CipherSuite != sc.ours || !st.ExtendedMasterSecret {
					t.Fatalf("our state %+v", st)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no connection accepted")
			}
			if !sc.psk {
				if err := cl.WaitFor("Verify return code: 0 (ok)", time.Second); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestOurClientOpenSSLServer: our client against openssl s_server
// -dtls1_2, every suite; data goes both ways.
func TestOurClientOpenSSLServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			srv, port := startSServer(t, openssl, sc, p, 1)
			cfg := ourClient(sc, p.Pool)
			cfg.ExtendedMasterSecret = dtls.RequireExtendedMasterSecret
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dtls.DialContext(ctx, "udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, cfg)
			if err != nil {
				t.Fatalf("handshake with openssl s_server: %v", err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("ping from dtlsresume\n")); err != nil {
				t.Fatal(err)
			}
			if err := srv.WaitFor("ping from dtlsresume", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := srv.WaitFor("CIPHER is "+opensslName(sc.ours), time.Second); err != nil {
				t.Fatal(err)
			}
			if err := srv.WriteStdin("pong from openssl\n"); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2048)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("reading s_server's reply: %v", err)
			}
			if got := string(buf[:n]); got != "pong from openssl\n" {
				t.Fatalf("reply %q", got)
			}
			if st := c.ConnectionState(); st.CipherSuite != sc.ours {
				t.Fatalf("suite %v", st.CipherSuite)
			}
		})
	}
}
