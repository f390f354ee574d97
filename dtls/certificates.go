package dtls

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// verifyPeerCertificates checks the peer's chain: its leaf must be an ECDSA
// P-256 or P-384 key; a client verifies the server against RootCAs and the expected
// name unless InsecureSkipVerify; a server applies ClientAuth against
// ClientCAs. VerifyPeerCertificate runs last on both sides.
func (c *Conn) verifyPeerCertificates(raw [][]byte) ([]*x509.Certificate, error) {
	peer := map[bool]string{true: "server", false: "client"}[c.isClient]
	if len(raw) == 0 {
		if c.isClient {
			return nil, localAlert(alertBadCertificate, errors.New("Certificate: server sent no certificate"))
		}
		if c.cfg.ClientAuth == RequireAnyClientCert || c.cfg.ClientAuth == RequireAndVerifyClientCert {
			return nil, localAlert(alertHandshakeFailure, errors.New("Certificate: client sent no certificate"))
		}
		return nil, nil
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, localAlert(alertBadCertificate, fmt.Errorf("Certificate: certificate %d: %w", i, err))
		}
		certs[i] = cert
	}
	if _, _, ok := ecdsaScheme(certs[0].PublicKey); !ok {
		return nil, localAlert(alertUnsupportedCertificate, fmt.Errorf("Certificate: %s key is not ECDSA P-256 or P-384", peer))
	}
	opts := x509.VerifyOptions{CurrentTime: c.cfg.now(), Intermediates: x509.NewCertPool()}
	verify := false
	if c.isClient {
		verify = !c.cfg.InsecureSkipVerify
		opts.Roots, opts.DNSName = c.cfg.RootCAs, c.expectedServerName()
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		verify = c.cfg.ClientAuth == VerifyClientCertIfGiven || c.cfg.ClientAuth == RequireAndVerifyClientCert
		opts.Roots = c.cfg.ClientCAs
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	var chains [][]*x509.Certificate
	if verify {
		for _, cert := range certs[1:] {
			opts.Intermediates.AddCert(cert)
		}
		var err error
		if chains, err = certs[0].Verify(opts); err != nil {
			return nil, localAlert(alertBadCertificate, fmt.Errorf("Certificate: %w", err))
		}
	}
	if c.cfg.VerifyPeerCertificate != nil {
		if err := c.cfg.VerifyPeerCertificate(raw, chains); err != nil {
			return nil, localAlert(alertBadCertificate, fmt.Errorf("Certificate: VerifyPeerCertificate: %w", err))
		}
	}
	return certs, nil
}

// acceptsRawPublicKeys reports whether this side accepts a raw public key
// (RFC 7250) from its peer: it pins keys, or checks them with a callback,
// or (a client) skips verification.
func (c *Config) acceptsRawPublicKeys(isClient bool) bool {
	return len(c.PeerPublicKeys) > 0 || c.VerifyPeerPublicKey != nil || (isClient && c.InsecureSkipVerify)
}

// presentsRawPublicKey reports whether this side can present a raw public
// key: it is asked to and holds a key.
func (c *Config) presentsRawPublicKey() bool {
	return c.RawPublicKey && len(c.Certificates) > 0 && c.Certificates[0].PrivateKey != nil
}

// ownSPKI is the DER SubjectPublicKeyInfo of this side's key.
func (c *Config) ownSPKI() ([]byte, error) {
	signer, ok := c.Certificates[0].PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the private key is not a crypto.Signer")
	}
	return x509.MarshalPKIXPublicKey(signer.Public())
}

// verifyPeerPublicKey checks a peer's raw public key: an ECDSA key on
// P-256 or P-384, among PeerPublicKeys when they are set, accepted by
// VerifyPeerPublicKey when it is (a client with InsecureSkipVerify and
// neither takes any).
func (c *Conn) verifyPeerPublicKey(spki []byte) (crypto.PublicKey, error) {
	peer := map[bool]string{true: "server", false: "client"}[c.isClient]
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, localAlert(alertBadCertificate, fmt.Errorf("Certificate: %s raw public key: %w", peer, err))
	}
	if _, _, ok := ecdsaScheme(pub); !ok {
		return nil, localAlert(alertUnsupportedCertificate, fmt.Errorf("Certificate: %s raw public key is not ECDSA P-256 or P-384", peer))
	}
	if !c.cfg.pinnedKey(spki) {
		// The fingerprint (of a public key: nothing secret) lets an operator
		// recognise the device and pin it.
		sum := sha256.Sum256(spki)
		return nil, localAlert(alertBadCertificate, fmt.Errorf("Certificate: %s raw public key (SHA-256 %x) is not one this side accepts", peer, sum))
	}
	return pub, nil
}

// pinnedKey reports whether a peer's raw public key is accepted by the
// pins and the callback.
func (c *Config) pinnedKey(spki []byte) bool {
	if len(c.PeerPublicKeys) > 0 && !slices.ContainsFunc(c.PeerPublicKeys, func(k []byte) bool { return bytes.Equal(k, spki) }) {
		return false
	}
	if c.VerifyPeerPublicKey != nil {
		return c.VerifyPeerPublicKey(spki) == nil
	}
	return len(c.PeerPublicKeys) > 0 || c.InsecureSkipVerify
}
