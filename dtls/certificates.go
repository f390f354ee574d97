package dtls

import (
	"crypto/x509"
	"errors"
	"fmt"
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
