package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	piondtls "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

var psk = []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}

const pskIdentity = "client1"

type suiteCase struct {
	ours dtls.CipherSuiteID
	pion piondtls.CipherSuiteID
	psk  bool
}

var suiteCases = []suiteCase{
	{dtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM_8, true},
	{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false},
	{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256, true},
	{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
	{dtls.TLS_PSK_WITH_AES_128_CCM, piondtls.TLS_PSK_WITH_AES_128_CCM, true},
	{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, false},
}

func serverCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := selfsign.GenerateSelfSignedWithDNS("localhost", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return cert, pool
}

func loopback() *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// acceptOne serves one echo connection on l and reports its state.
func acceptOne(l net.Listener) <-chan dtls.ConnectionState {
	accepted := make(chan dtls.ConnectionState, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		accepted <- c.(*dtls.Conn).ConnectionState()
		dtlstest.Echo(c)
	}()
	return accepted
}

func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(buf[:n], []byte(msg)) {
		t.Fatalf("echo = %q, want %q", buf[:n], msg)
	}
}

// TestPionClientOurServer: pion/dtls v3's client against our Listener, every suite.
func TestPionClientOurServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			scfg, ccfg := ourServer(sc, cert), pionClient(sc, pool)
			l, err := dtls.Listen("udp", loopback(), scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := acceptOne(l)
			c := pionDial(t, l.Addr().(*net.UDPAddr), ccfg)
			roundTrip(t, c, "pion to us")
			st, _ := c.ConnectionState()
			if uint16(st.CipherSuiteID) != uint16(sc.ours) {
				t.Fatalf("pion negotiated %v", st.CipherSuiteID)
			}
			select {
			case ours := <-accepted:
				if ours.CipherSuite != sc.ours || !ours.ExtendedMasterSecret {
					t.Fatalf("our state %+v", ours)
				}
				if sc.psk && string(ours.PSKIdentity) != pskIdentity {
					t.Fatalf("PSK identity %q", ours.PSKIdentity)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("listener did not accept")
			}
		})
	}
}

// TestOurClientPionServer: our client against pion/dtls v3's listener.
func TestOurClientPionServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			scfg, ccfg := pionServer(sc, cert), ourClient(sc, pool)
			ccfg.ExtendedMasterSecret = dtls.RequireExtendedMasterSecret
			if sc.psk {
				scfg.PSKIdentityHint = []byte("hint")
			}
			l, err := piondtls.Listen("udp", loopback(), scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go dtlstest.ServeEcho(l, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dtls.DialContext(ctx, "udp", l.Addr().(*net.UDPAddr), ccfg)
			if err != nil {
				t.Fatalf("our handshake with pion: %v", err)
			}
			defer c.Close()
			roundTrip(t, c, "us to pion")
			st := c.ConnectionState()
			if st.CipherSuite != sc.ours || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
			if sc.psk && string(st.PSKIdentityHint) != "hint" {
				t.Fatalf("hint %q", st.PSKIdentityHint)
			}
			if !sc.psk && len(st.PeerCertificates) != 1 {
				t.Fatalf("peer certificates %d", len(st.PeerCertificates))
			}
		})
	}
}
