package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// rpkFiles makes a P-256 key pair as PEM files (PKCS#8 private key, SPKI
// public key) and returns it for our side too.
func rpkFiles(t *testing.T, name string) (keyFile, pubFile string, cert tls.Certificate, spki []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if spki, err = x509.MarshalPKIXPublicKey(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile, pubFile = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, pubFile, tls.Certificate{PrivateKey: key}, spki
}

const gnutlsRPKPriority = "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM-8:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-RAWPK"

// TestRawPublicKeysOurClientGnuTLSServer: our client pins gnutls-serv's raw
// public key, alone and with a raw key of its own (mutual).
func TestRawPublicKeysOurClientGnuTLSServer(t *testing.T) {
	serv := peers.Require(t, "gnutls-serv")
	srvKey, srvPub, _, srvSPKI := rpkFiles(t, "server")
	_, _, cliCert, _ := rpkFiles(t, "client")
	for _, mutual := range []bool{false, true} {
		t.Run(map[bool]string{false: "server only", true: "mutual"}[mutual], func(t *testing.T) {
			port := peers.FreeUDPPort(t)
			args := []string{"--udp", "-p", strconv.Itoa(port), "--echo", "--rawpkkeyfile", srvKey, "--rawpkfile", srvPub, "--priority", gnutlsRPKPriority}
			if mutual {
				args = append(args, "--require-client-cert")
			}
			peers.Start(t, serv, args...)
			peers.WaitUDPListening(t, port, 10*time.Second)
			cfg := &dtls.Config{PeerPublicKeys: [][]byte{srvSPKI}, CipherSuites: []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
			if mutual {
				cfg.Certificates, cfg.RawPublicKey = []tls.Certificate{cliCert}, true
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dtls.DialContext(ctx, "udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, cfg)
			if err != nil {
				t.Fatalf("our client against gnutls-serv with raw public keys: %v", err)
			}
			defer c.Close()
			roundTrip(t, c, "raw keys to gnutls")
			if st := c.ConnectionState(); string(st.PeerPublicKey) != string(srvSPKI) {
				t.Fatal("the server's raw key is not the peer identity")
			}
		})
	}
}

// TestRawPublicKeysGnuTLSClientOurServer: gnutls-cli with a raw key of its
// own against our server presenting its raw key; our server pins the
// client's.
func TestRawPublicKeysGnuTLSClientOurServer(t *testing.T) {
	cli := peers.Require(t, "gnutls-cli")
	_, _, srvCert, _ := rpkFiles(t, "server")
	cliKey, cliPub, _, cliSPKI := rpkFiles(t, "client")
	l, err := dtls.Listen("udp", loopback(), &dtls.Config{Certificates: []tls.Certificate{srvCert}, RawPublicKey: true,
		ClientAuth: dtls.RequireAnyClientCert, PeerPublicKeys: [][]byte{cliSPKI}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := acceptOne(l)
	g := peers.Start(t, cli, "--udp", "-p", strconv.Itoa(l.Addr().(*net.UDPAddr).Port), "127.0.0.1", "--no-ca-verification",
		"--rawpkkeyfile", cliKey, "--rawpkfile", cliPub, "--priority", gnutlsRPKPriority)
	select {
	case st := <-accepted:
		if string(st.PeerPublicKey) != string(cliSPKI) {
			t.Fatal("the client's raw key is not the peer identity")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("gnutls-cli with raw public keys: no handshake:\n%s", g.Output())
	}
}

// TestRawPublicKeysGnuTLSClientOurServerOnly: gnutls-cli with no key of its
// own takes our server's raw public key (server authentication only; the
// client's priority lists only raw keys for the server).
func TestRawPublicKeysGnuTLSClientOurServerOnly(t *testing.T) {
	cli := peers.Require(t, "gnutls-cli")
	_, _, srvCert, _ := rpkFiles(t, "server")
	l, err := dtls.Listen("udp", loopback(), &dtls.Config{Certificates: []tls.Certificate{srvCert}, RawPublicKey: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := acceptOne(l)
	g := peers.Start(t, cli, "--udp", "-p", strconv.Itoa(l.Addr().(*net.UDPAddr).Port), "127.0.0.1", "--no-ca-verification",
		"--priority", "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM-8:-CTYPE-ALL:+CTYPE-SRV-RAWPK")
	select {
	case st := <-accepted:
		if st.PeerPublicKey != nil || st.CipherSuite != dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 {
			t.Fatalf("state %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("gnutls-cli taking our raw public key: no handshake:\n%s", g.Output())
	}
	if err := g.WriteStdin("raw key only on the server\n"); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor("raw key only on the server", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor("Certificate type: Raw Public Key", time.Second); err != nil {
		t.Fatal(err)
	}
}
