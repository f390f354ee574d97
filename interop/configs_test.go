package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	piondtls "github.com/pion/dtls/v3"
)

// The credentials of every interop test: the test PSK under pskIdentity,
// or a certificate for localhost. Each helper is one side's Config for
// suite sc; tests add what they are about.

// ourClient is our client for sc, trusting pool for certificate suites.
func ourClient(sc suiteCase, pool *x509.CertPool) *dtls.Config {
	cfg := &dtls.Config{CipherSuites: []dtls.CipherSuiteID{sc.ours}}
	if sc.psk {
		cfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
		cfg.PSKIdentityHint = []byte(pskIdentity)
	} else {
		cfg.RootCAs, cfg.ServerName = pool, "localhost"
	}
	return cfg
}

// ourServer is our server for sc: the PSK for pskIdentity only, or cert.
func ourServer(sc suiteCase, cert tls.Certificate) *dtls.Config {
	cfg := &dtls.Config{CipherSuites: []dtls.CipherSuiteID{sc.ours}}
	if sc.psk {
		cfg.PSK = func(id []byte) ([]byte, error) {
			if string(id) != pskIdentity {
				return nil, fmt.Errorf("unknown identity")
			}
			return psk, nil
		}
	} else {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// pionClient is pion's client for sc, trusting pool; it requires the
// extended master secret.
func pionClient(sc suiteCase, pool *x509.CertPool) *piondtls.Config {
	cfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{sc.pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
	if sc.psk {
		cfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
		cfg.PSKIdentityHint = []byte(pskIdentity)
	} else {
		cfg.RootCAs, cfg.ServerName = pool, "localhost"
	}
	return cfg
}

// pionServer is pion's server for sc; it requires the extended master
// secret.
func pionServer(sc suiteCase, cert tls.Certificate) *piondtls.Config {
	cfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{sc.pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
	if sc.psk {
		cfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
	} else {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// pionDial runs pion's client to addr through a completed handshake; the
// connection closes when the test ends.
func pionDial(t *testing.T, addr *net.UDPAddr, cfg *piondtls.Config) *piondtls.Conn {
	t.Helper()
	c, err := piondtls.Dial("udp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("pion client's handshake: %v", err)
	}
	return c
}
