package dtls

import (
	"errors"
	"fmt"
)

// alertLevel and alertDescription are the two bytes of an Alert record
// (RFC 5246 §7.2):
//
//	struct {
//	    AlertLevel level;
//	    AlertDescription description;
//	} Alert;
type alertLevel uint8

const (
	alertLevelWarning alertLevel = 1
	alertLevelFatal   alertLevel = 2
)

type alertDescription uint8

const (
	alertCloseNotify            alertDescription = 0
	alertUnexpectedMessage      alertDescription = 10
	alertBadRecordMAC           alertDescription = 20
	alertRecordOverflow         alertDescription = 22
	alertHandshakeFailure       alertDescription = 40
	alertBadCertificate         alertDescription = 42
	alertUnsupportedCertificate alertDescription = 43
	alertCertificateExpired     alertDescription = 45
	alertCertificateUnknown     alertDescription = 46
	alertIllegalParameter       alertDescription = 47
	alertUnknownCA              alertDescription = 48
	alertAccessDenied           alertDescription = 49
	alertDecodeError            alertDescription = 50
	alertDecryptError           alertDescription = 51
	alertProtocolVersion        alertDescription = 70
	alertInsufficientSecurity   alertDescription = 71
	alertInternalError          alertDescription = 80
	alertNoRenegotiation        alertDescription = 100
	alertUnsupportedExtension   alertDescription = 110
	alertUnknownPSKIdentity     alertDescription = 115
)

var alertNames = map[alertDescription]string{
	alertCloseNotify:            "close_notify",
	alertUnexpectedMessage:      "unexpected_message",
	alertBadRecordMAC:           "bad_record_mac",
	alertRecordOverflow:         "record_overflow",
	alertHandshakeFailure:       "handshake_failure",
	alertBadCertificate:         "bad_certificate",
	alertUnsupportedCertificate: "unsupported_certificate",
	alertCertificateExpired:     "certificate_expired",
	alertCertificateUnknown:     "certificate_unknown",
	alertIllegalParameter:       "illegal_parameter",
	alertUnknownCA:              "unknown_ca",
	alertAccessDenied:           "access_denied",
	alertDecodeError:            "decode_error",
	alertDecryptError:           "decrypt_error",
	alertProtocolVersion:        "protocol_version",
	alertInsufficientSecurity:   "insufficient_security",
	alertInternalError:          "internal_error",
	alertNoRenegotiation:        "no_renegotiation",
	alertUnsupportedExtension:   "unsupported_extension",
	alertUnknownPSKIdentity:     "unknown_psk_identity",
}

func (d alertDescription) String() string {
	if s, ok := alertNames[d]; ok {
		return s
	}
	return fmt.Sprintf("alert(%d)", uint8(d))
}

// AlertError is returned when a handshake or connection ends because of a
// fatal alert, either one this side sent (Remote false) or one the peer sent
// (Remote true). Err, when set, is the local cause; it never holds key material.
type AlertError struct {
	Description uint8
	Remote      bool
	Err         error
}

func (e *AlertError) Error() string {
	d := alertDescription(e.Description)
	if e.Remote {
		return fmt.Sprintf("dtls: peer sent alert %s", d)
	}
	if e.Err != nil {
		return fmt.Sprintf("dtls: %v (alert %s sent)", e.Err, d)
	}
	return fmt.Sprintf("dtls: alert %s sent", d)
}

func (e *AlertError) Unwrap() error { return e.Err }

// localAlert wraps err so that the connection answers it with the fatal
// alert d.
func localAlert(d alertDescription, err error) error {
	return &AlertError{Description: uint8(d), Err: err}
}

// errDecode is wrapped by every codec error; it maps to decode_error.
var errDecode = errors.New("malformed message")

// decodeError names the message and field that failed to parse. It maps to
// the decode_error alert.
func decodeError(msg, field string) error {
	return localAlert(alertDecodeError, fmt.Errorf("%s: %s: %w", msg, field, errDecode))
}

var errBadFinished = errors.New("Finished: verify_data does not match the transcript")
