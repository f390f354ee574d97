package dtls

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

const cookieSize = 32

// cookieJar makes and checks stateless HelloVerifyRequest cookies
// (RFC 6347 §4.2.1): HMAC-SHA256 under a secret that rotates, over the
// client's address and its ClientHello without cookie and session_id (some
// clients change session_id when they repeat the hello). A cookie made under
// the previous secret is still accepted, so a rotation never strands a
// client mid-exchange.
type cookieJar struct {
	mu       sync.Mutex
	rotation time.Duration
	now      func() time.Time
	current  [32]byte
	previous [32]byte
	rotated  time.Time
}

func newCookieJar(rotation time.Duration, now func() time.Time) (*cookieJar, error) {
	j := &cookieJar{rotation: rotation, now: now}
	if _, err := rand.Read(j.current[:]); err != nil {
		return nil, err
	}
	j.previous = j.current
	j.rotated = now()
	return j, nil
}

func (j *cookieJar) secrets() (cur, prev [32]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.now().Sub(j.rotated) >= j.rotation {
		j.previous = j.current
		if _, err := rand.Read(j.current[:]); err != nil {
			j.current = j.previous // keep working; rand does not fail on Linux
		}
		j.rotated = j.now()
	}
	return j.current, j.previous
}

// cookieInput is what a cookie covers: the hello without cookie and
// session_id.
func cookieInput(hello *clientHelloMsg) []byte {
	h := *hello
	h.cookie = nil
	h.sessionID = nil
	body, _ := h.marshal()
	return body
}

func cookieMAC(secret [32]byte, addr string, input []byte) []byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte(addr))
	m.Write([]byte{0})
	m.Write(input)
	return m.Sum(nil)[:cookieSize]
}

func (j *cookieJar) make(addr string, hello *clientHelloMsg) []byte {
	cur, _ := j.secrets()
	return cookieMAC(cur, addr, cookieInput(hello))
}

// valid reports whether the hello carries a cookie we made for addr.
func (j *cookieJar) valid(addr string, hello *clientHelloMsg) bool {
	if len(hello.cookie) != cookieSize {
		return false
	}
	cur, prev := j.secrets()
	input := cookieInput(hello)
	return hmac.Equal(hello.cookie, cookieMAC(cur, addr, input)) ||
		hmac.Equal(hello.cookie, cookieMAC(prev, addr, input))
}
