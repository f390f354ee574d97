package dtls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// HandshakeError is a failed handshake: with which peer, at which stage,
// why. Err is the cause (an *AlertError, a timeout, a transport error);
// errors.Is and errors.As see through to it. It never holds key material.
type HandshakeError struct {
	Peer  string // the peer's address
	Stage string // what the handshake was doing: "waiting for ServerHello", "ClientKeyExchange", ...
	Err   error
}

func (e *HandshakeError) Error() string {
	if errors.Is(e.Err, errHandshakeTimeout) {
		return fmt.Sprintf("dtls: handshake with %s timed out %s", e.Peer, e.Stage)
	}
	msg := fmt.Sprintf("dtls: handshake with %s failed (%s): %v", e.Peer, e.Stage, e.Err)
	var ae *AlertError
	if r, _ := ReasonOf(e.Err); r == ReasonBadKey && errors.As(e.Err, &ae) && ae.Remote {
		// Say what the peer's alert most likely means.
		msg += " (the peer could not authenticate our Finished: a wrong PSK, or a PSK identity it does not know)"
	}
	return msg
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Reason classifies why a handshake failed, for metrics labels and logs:
// a small, bounded set.
type Reason string

const (
	ReasonTimeout         Reason = "timeout"          // the peer stopped answering
	ReasonRefused         Reason = "refused"          // nothing listens there (ICMP port unreachable)
	ReasonNetwork         Reason = "network"          // another socket error
	ReasonBadKey          Reason = "bad_key"          // the two sides derived different keys: a wrong PSK
	ReasonUnknownIdentity Reason = "unknown_identity" // the server knows no such PSK identity
	ReasonBadCertificate  Reason = "bad_certificate"  // a certificate did not verify
	ReasonNoCommonSuite   Reason = "no_common_suite"  // nothing both sides can use
	ReasonProtocol        Reason = "protocol"         // a malformed or unexpected message
	ReasonPeerAlert       Reason = "peer_alert"       // the peer ended it (ReasonDetail names the alert)
	ReasonClosed          Reason = "closed"           // the Conn or its Listener was closed
	ReasonCanceled        Reason = "canceled"         // the caller's context ended it
	ReasonInternal        Reason = "internal"         // a local failure (randomness, a callback, sealing)
)

// errNoCommonSuite: the ClientHello offers no suite the server can use.
var errNoCommonSuite = errors.New("ClientHello: no cipher suite in common")

// Reasons lists every Reason, for metrics that pre-declare their labels.
func Reasons() []Reason {
	return []Reason{ReasonTimeout, ReasonRefused, ReasonNetwork, ReasonBadKey, ReasonUnknownIdentity, ReasonBadCertificate,
		ReasonNoCommonSuite, ReasonProtocol, ReasonPeerAlert, ReasonClosed, ReasonCanceled, ReasonInternal}
}

// ReasonOf classifies a handshake error; detail names a peer's alert
// ("handshake_failure") and is empty otherwise. A nil error has no reason.
func ReasonOf(err error) (r Reason, detail string) {
	var ae *AlertError
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, errHandshakeTimeout), errors.Is(err, errUnverifiedSilent):
		return ReasonTimeout, ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused, ""
	case errors.Is(err, net.ErrClosed):
		return ReasonClosed, ""
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ReasonCanceled, ""
	case errors.As(err, &ae) && ae.Remote:
		switch alertDescription(ae.Description) {
		case alertUnknownPSKIdentity:
			return ReasonUnknownIdentity, ""
		case alertBadRecordMAC, alertDecryptError:
			// The peer could not authenticate our Finished: a wrong key,
			// or (answered the same way) an identity it does not know.
			return ReasonBadKey, ""
		}
		return ReasonPeerAlert, alertDescription(ae.Description).String()
	case errors.As(err, &ae):
		switch alertDescription(ae.Description) {
		case alertBadRecordMAC, alertDecryptError:
			if errors.Is(err, errUnknownIdentityHidden) {
				return ReasonUnknownIdentity, ""
			}
			if errors.Is(err, errKeysDiffer) || errors.Is(err, errBadFinished) {
				return ReasonBadKey, ""
			}
			if alertDescription(ae.Description) == alertDecryptError {
				return ReasonBadCertificate, "" // a signature that does not verify
			}
			return ReasonProtocol, ""
		case alertUnknownPSKIdentity:
			return ReasonUnknownIdentity, ""
		case alertBadCertificate, alertUnsupportedCertificate, alertCertificateExpired, alertUnknownCA,
			alertCertificateUnknown:
			return ReasonBadCertificate, ""
		case alertHandshakeFailure, alertInsufficientSecurity:
			if errors.Is(err, errNoCommonSuite) {
				return ReasonNoCommonSuite, ""
			}
			return ReasonProtocol, ""
		case alertInternalError:
			return ReasonInternal, ""
		}
		return ReasonProtocol, ""
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return ReasonNetwork, ""
	}
	return ReasonInternal, ""
}
