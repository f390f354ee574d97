package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
	piondtls "github.com/pion/dtls/v3"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
)

// curveCases pair our group with pion's and OpenSSL's -groups list, whose
// first group is the one for ECDHE; P-256 follows for the test CA's
// certificate (RFC 8422 §5.1: the list names signature curves too).
var curveCases = []struct {
	ours    dtls.CurveID
	pion    pionelliptic.Curve
	openssl string
}{
	{dtls.CurveX25519, pionelliptic.X25519, "X25519:P-256"},
	{dtls.CurveP384, pionelliptic.P384, "P-384:P-256"},
	{dtls.CurveP256, pionelliptic.P256, "P-256"},
}

// certOn makes a self-signed certificate for localhost on curve.
func certOn(t *testing.T, curve elliptic.Curve) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestCurvesWithPion: X25519, P-384 and P-256 with P-256 and P-384
// certificates, pion/dtls v3 as the client and as the server.
func TestCurvesWithPion(t *testing.T) {
	for _, certCurve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		cert, pool := certOn(t, certCurve)
		for _, cc := range curveCases {
			t.Run(certCurve.Params().Name+"/"+cc.ours.String(), func(t *testing.T) {
				suite := piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
				// pion's client, our server.
				l, err := dtls.Listen("udp", loopback(), &dtls.Config{Certificates: []tls.Certificate{cert}})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				accepted := acceptOne(l)
				// The group for ECDHE first; the certificate's curve too
				// (RFC 8422 §5.1: the list names signature curves as well).
				certGroup := pionelliptic.P256
				if certCurve == elliptic.P384() {
					certGroup = pionelliptic.P384
				}
				pc := pionDial(t, l.Addr().(*net.UDPAddr), &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{suite},
					RootCAs: pool, ServerName: "localhost", EllipticCurves: []pionelliptic.Curve{cc.pion, certGroup}})
				roundTrip(t, pc, "pion client "+cc.ours.String())
				pc.Close()
				if st := <-accepted; st.Curve != cc.ours {
					t.Fatalf("our server chose %v", st.Curve)
				}

				// Our client, pion's server.
				pl, err := piondtls.Listen("udp", loopback(), &piondtls.Config{Certificates: []tls.Certificate{cert},
					CipherSuites: []piondtls.CipherSuiteID{suite}, EllipticCurves: []pionelliptic.Curve{cc.pion}})
				if err != nil {
					t.Fatal(err)
				}
				defer pl.Close()
				go dtlstest.ServeEcho(pl, nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := dtls.DialContext(ctx, "udp", pl.Addr().(*net.UDPAddr), &dtls.Config{RootCAs: pool, ServerName: "localhost",
					CipherSuites: []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}})
				if err != nil {
					t.Fatalf("our client: %v", err)
				}
				defer c.Close()
				roundTrip(t, c, "our client "+cc.ours.String())
				if st := c.ConnectionState(); st.Curve != cc.ours {
					t.Fatalf("pion's server chose %v", st.Curve)
				}
			})
		}
	}
}

// TestCurvesWithOpenSSL: X25519, P-384 and P-256 against openssl s_server
// and s_client restricted to one group (-groups).
func TestCurvesWithOpenSSL(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	sc := suiteCases[1] // ECDHE-ECDSA-AES128-CCM8
	for _, cc := range curveCases {
		t.Run(cc.ours.String(), func(t *testing.T) {
			srv, port := startSServer(t, openssl, sc, p, 1, "-groups", cc.openssl)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dtls.DialContext(ctx, "udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
				&dtls.Config{CipherSuites: []dtls.CipherSuiteID{sc.ours}, RootCAs: p.Pool, CurvePreferences: []dtls.CurveID{cc.ours, dtls.CurveP256}})
			if err != nil {
				t.Fatalf("our client against s_server -groups %s: %v", cc.openssl, err)
			}
			if st := c.ConnectionState(); st.Curve != cc.ours {
				t.Fatalf("s_server chose %v", st.Curve)
			}
			c.Close()
			srv.Stop()

			l, err := dtls.Listen("udp", loopback(), ourServerConfig(p, sc))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := acceptOne(l)
			cl := peers.Start(t, openssl, append(sClientArgs("127.0.0.1:"+strconv.Itoa(l.Addr().(*net.UDPAddr).Port), sc, p), "-groups", cc.openssl)...)
			select {
			case st := <-accepted:
				if st.Curve != cc.ours {
					t.Fatalf("s_client -groups %s: we chose %v", cc.openssl, st.Curve)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("s_client -groups %s: no handshake:\n%s", cc.openssl, cl.Output())
			}
		})
	}
}
