package dtls

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// masterSecret derives the session's master secret from the premaster
// secret: with the extended master secret (RFC 7627 §4) over the hash of the
// transcript through ClientKeyExchange, otherwise over the two randoms
// (RFC 5246 §8.1).
func masterSecret(preMaster []byte, ems bool, transcript []byte, clientRandom, serverRandom [32]byte) ([]byte, error) {
	if ems {
		h := sha256.Sum256(transcript)
		return prf.ExtendedMasterSecret(preMaster, h[:], sha256.New)
	}
	return prf.MasterSecret(preMaster, clientRandom[:], serverRandom[:], sha256.New)
}

// finishedData computes verify_data over the transcript (RFC 5246 §7.4.9).
func finishedData(ms, transcript []byte, client bool) ([]byte, error) {
	if client {
		return prf.VerifyDataClient(ms, transcript, sha256.New)
	}
	return prf.VerifyDataServer(ms, transcript, sha256.New)
}

// verifyFinished checks the peer's verify_data in constant time.
func verifyFinished(ms, transcript []byte, fromClient bool, got []byte) error {
	want, err := finishedData(ms, transcript, fromClient)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return localAlert(alertDecryptError, errBadFinished)
	}
	return nil
}

func newRandom() ([32]byte, error) {
	var r [32]byte
	_, err := rand.Read(r[:])
	return r, err
}
