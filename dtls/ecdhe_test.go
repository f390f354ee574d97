package dtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// newTestCertOn is newTestCert with an ECDSA key on curve.
func newTestCertOn(t testing.TB, curve elliptic.Curve) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
}

// TestECDHEGroupsAndP384Certificates: X25519, P-256 and P-384, with P-256
// and P-384 certificates on both sides (mutual authentication): the server
// takes the first of the client's groups it has, and each side signs with
// the scheme of its key.
func TestECDHEGroupsAndP384Certificates(t *testing.T) {
	cases := []struct {
		name           string
		client, server []CurveID
		want           CurveID
	}{
		{"default order", nil, nil, CurveP256},
		{"client prefers X25519", []CurveID{CurveX25519, CurveP256, CurveP384}, nil, CurveX25519},
		{"client prefers P-384", []CurveID{CurveP384, CurveX25519, CurveP256}, nil, CurveP384},
		{"server has only P-384", nil, []CurveID{CurveP384}, CurveP384},
		{"server has only X25519", []CurveID{CurveP384, CurveP256, CurveX25519}, []CurveID{CurveX25519}, CurveX25519},
	}
	for _, certCurve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		srvCert, cliCert := newTestCertOn(t, certCurve), newTestCertOn(t, certCurve)
		for _, tc := range cases {
			t.Run(certCurve.Params().Name+"/"+tc.name, func(t *testing.T) {
				scfg := &Config{Certificates: []tls.Certificate{srvCert.cert}, CurvePreferences: tc.server,
					ClientAuth: RequireAndVerifyClientCert, ClientCAs: cliCert.pool}
				l := startEchoServer(t, scfg)
				ccfg := &Config{RootCAs: srvCert.pool, ServerName: "localhost", CurvePreferences: tc.client,
					Certificates: []tls.Certificate{cliCert.cert}, CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
				c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if st := c.ConnectionState(); st.Curve != tc.want {
					t.Fatalf("group %v, want %v", st.Curve, tc.want)
				}
				echoOnce(t, c, "ecdhe")
			})
		}
	}
	// The certificate's curve must be among the client's groups (RFC 8422
	// §5.1): a P-256 certificate and a client of X25519 and P-384 only.
	{
		scfg := &Config{Certificates: []tls.Certificate{newTestCert(t).cert}}
		l := startEchoServer(t, scfg)
		ccfg := &Config{InsecureSkipVerify: true, CurvePreferences: []CurveID{CurveX25519, CurveP384}, HandshakeTimeout: 2 * time.Second}
		if _, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg); err == nil {
			t.Fatal("a handshake with a certificate on a curve the client did not offer succeeded")
		}
	}
	// No group in common: no ECDHE suite, so no handshake.
	scfg := &Config{Certificates: []tls.Certificate{newTestCert(t).cert}, CurvePreferences: []CurveID{CurveP384}}
	l := startEchoServer(t, scfg)
	ccfg := &Config{InsecureSkipVerify: true, CurvePreferences: []CurveID{CurveX25519}, HandshakeTimeout: 2 * time.Second}
	if _, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg); err == nil {
		t.Fatal("a handshake without a group in common succeeded")
	}
}
