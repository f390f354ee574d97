package dtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// rawKey is a key pair for raw public key tests: a tls.Certificate with no
// chain, and the DER SubjectPublicKeyInfo that pins it.
func rawKey(t testing.TB, curve elliptic.Curve) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{PrivateKey: key}, spki
}

// TestRawPublicKeys: RFC 7250 between our own sides: the server
// authenticated by its raw key alone and mutually, on P-256 and P-384; the
// authenticated key is the peer identity in ConnectionState and survives
// resumption of every type; a key outside the pins fails with
// bad_certificate.
func TestRawPublicKeys(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		srvKey, srvSPKI := rawKey(t, curve)
		cliKey, cliSPKI := rawKey(t, curve)
		for _, mutual := range []bool{false, true} {
			for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
				name := curve.Params().Name + "/server only/" + typ.String()
				if mutual {
					name = curve.Params().Name + "/mutual/" + typ.String()
				}
				t.Run(name, func(t *testing.T) {
					scfg := &Config{Certificates: []tls.Certificate{srvKey}, RawPublicKey: true, SessionStore: newMapStore(),
						Resumption: []negotiation.Type{typ}}
					ccfg := &Config{PeerPublicKeys: [][]byte{srvSPKI}, Resumption: []negotiation.Type{typ},
						ClientSessionCache: NewLRUClientSessionCache(1), ClientStateKey: make([]byte, 16),
						CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
					if mutual {
						scfg.ClientAuth, scfg.PeerPublicKeys = RequireAnyClientCert, [][]byte{cliSPKI}
						ccfg.Certificates, ccfg.RawPublicKey = []tls.Certificate{cliKey}, true
					}
					var mu sync.Mutex
					var serverKey []byte
					scfg.HandshakeObserver = func(st ConnectionState, err error) {
						mu.Lock()
						defer mu.Unlock()
						if err == nil {
							serverKey = st.PeerPublicKey
						}
					}
					l := startEchoServer(t, scfg)
					for i := range 2 {
						c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
						if err != nil {
							t.Fatalf("dial %d: %v", i, err)
						}
						echoOnce(t, c, "rpk")
						st := c.ConnectionState()
						c.Close()
						if st.Resumed != (i == 1) || string(st.PeerPublicKey) != string(srvSPKI) || len(st.PeerCertificates) != 0 {
							t.Fatalf("dial %d: resumed=%v, server key known=%v", i, st.Resumed, string(st.PeerPublicKey) == string(srvSPKI))
						}
						if mutual {
							waitFor(t, "the server to know the client's key", func() bool {
								mu.Lock()
								defer mu.Unlock()
								return string(serverKey) == string(cliSPKI)
							})
							mu.Lock()
							serverKey = nil
							mu.Unlock()
						}
					}
				})
			}
		}
	}

	// A server key the client does not pin, and a client key the server
	// does not pin: bad_certificate either way.
	srvKey, _ := rawKey(t, elliptic.P256())
	_, otherSPKI := rawKey(t, elliptic.P256())
	l := startEchoServer(t, &Config{Certificates: []tls.Certificate{srvKey}, RawPublicKey: true})
	_, err := Dial("udp", l.Addr().(*net.UDPAddr), &Config{PeerPublicKeys: [][]byte{otherSPKI}, HandshakeTimeout: 2 * time.Second})
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Remote || alertDescription(ae.Description) != alertBadCertificate {
		t.Fatalf("an unpinned server key: %v, want bad_certificate", err)
	}
	cliKey, _ := rawKey(t, elliptic.P256())
	srvKey2, srvSPKI2 := rawKey(t, elliptic.P256())
	l2 := startEchoServer(t, &Config{Certificates: []tls.Certificate{srvKey2}, RawPublicKey: true, ClientAuth: RequireAnyClientCert,
		PeerPublicKeys: [][]byte{otherSPKI}})
	_, err = Dial("udp", l2.Addr().(*net.UDPAddr), &Config{PeerPublicKeys: [][]byte{srvSPKI2}, Certificates: []tls.Certificate{cliKey},
		RawPublicKey: true, HandshakeTimeout: 2 * time.Second})
	if !errors.As(err, &ae) || !ae.Remote || alertDescription(ae.Description) != alertBadCertificate {
		t.Fatalf("an unpinned client key: %v, want the server's bad_certificate", err)
	}
}

// TestRawPublicKeyRevokedDoesNotResume: once the server's
// VerifyPeerPublicKey stops accepting a client's key, that client's session
// (by session ID, ticket or client_state) no longer resumes: the server falls
// back to a full handshake, which refuses the key with bad_certificate.
func TestRawPublicKeyRevokedDoesNotResume(t *testing.T) {
	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		t.Run(typ.String(), func(t *testing.T) {
			srvKey, srvSPKI := rawKey(t, elliptic.P256())
			cliKey, cliSPKI := rawKey(t, elliptic.P256())
			var revoked sync.Map
			scfg := &Config{Certificates: []tls.Certificate{srvKey}, RawPublicKey: true, SessionStore: newMapStore(),
				Resumption: []negotiation.Type{typ}, ClientAuth: RequireAnyClientCert,
				VerifyPeerPublicKey: func(spki []byte) error {
					if _, ok := revoked.Load(string(spki)); ok {
						return errors.New("revoked")
					}
					return nil
				}}
			ccfg := &Config{PeerPublicKeys: [][]byte{srvSPKI}, Resumption: []negotiation.Type{typ},
				ClientSessionCache: NewLRUClientSessionCache(1), ClientStateKey: make([]byte, 16),
				Certificates: []tls.Certificate{cliKey}, RawPublicKey: true, HandshakeTimeout: 2 * time.Second}
			l := startEchoServer(t, scfg)
			for i := range 2 {
				c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				echoOnce(t, c, "before")
				if st := c.ConnectionState(); st.Resumed != (i == 1) {
					t.Fatalf("dial %d: resumed=%v", i, st.Resumed)
				}
				c.Close()
			}
			revoked.Store(string(cliSPKI), true)
			_, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
			var ae *AlertError
			if !errors.As(err, &ae) || !ae.Remote || alertDescription(ae.Description) != alertBadCertificate {
				t.Fatalf("after revocation: %v, want the server's bad_certificate", err)
			}
		})
	}
}
