package dtls

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

const (
	cookieSize     = 32
	cookieTimeSize = 4 // seconds since the Unix epoch, big-endian
	// cookieClockSkew tolerates a cookie stamped a little in our future
	// (the clock is read on two goroutines).
	cookieClockSkew = 2 * time.Second
)

// cookieJar makes and checks stateless HelloVerifyRequest cookies
// (RFC 6347 §4.2.1). A cookie is
//
//	uint32 created;            /* Unix seconds */
//	opaque mac[28];            /* HMAC-SHA256(secret, created || address || 0 || hello) */
//
// where hello is the ClientHello without cookie and session_id (some
// clients change session_id when they repeat the hello). A cookie expires
// lifetime after it was made; the secret changes on a timer (rotate), and a
// cookie made under the previous secret is still accepted, so a rotation
// never strands a client mid-exchange (docs/decisions.md, "Cookies").
type cookieJar struct {
	lifetime time.Duration
	now      func() time.Time

	mu       sync.Mutex
	current  [32]byte
	previous [32]byte
}

func newCookieJar(lifetime time.Duration, now func() time.Time) (*cookieJar, error) {
	j := &cookieJar{lifetime: lifetime, now: now}
	if _, err := rand.Read(j.current[:]); err != nil {
		return nil, err
	}
	j.previous = j.current
	return j, nil
}

// rotate makes a new current secret; the old one becomes the previous.
func (j *cookieJar) rotate() {
	var next [32]byte
	if _, err := rand.Read(next[:]); err != nil {
		return // keep working; rand does not fail on Linux
	}
	j.mu.Lock()
	j.previous, j.current = j.current, next
	j.mu.Unlock()
}

func (j *cookieJar) secrets() (cur, prev [32]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
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

func cookieMAC(secret [32]byte, created []byte, addr string, input []byte) []byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write(created)
	m.Write([]byte(addr))
	m.Write([]byte{0})
	m.Write(input)
	return m.Sum(nil)[:cookieSize-cookieTimeSize]
}

func (j *cookieJar) make(addr string, hello *clientHelloMsg) []byte {
	cur, _ := j.secrets()
	cookie := binary.BigEndian.AppendUint32(make([]byte, 0, cookieSize), uint32(j.now().Unix()))
	return append(cookie, cookieMAC(cur, cookie, addr, cookieInput(hello))...)
}

// valid reports whether the hello carries an unexpired cookie we made for
// addr.
func (j *cookieJar) valid(addr string, hello *clientHelloMsg) bool {
	if len(hello.cookie) != cookieSize {
		return false
	}
	created := time.Unix(int64(binary.BigEndian.Uint32(hello.cookie)), 0)
	now := j.now()
	if now.Sub(created) > j.lifetime || created.Sub(now) > cookieClockSkew {
		return false
	}
	cur, prev := j.secrets()
	input := cookieInput(hello)
	stamp, mac := hello.cookie[:cookieTimeSize], hello.cookie[cookieTimeSize:]
	return hmac.Equal(mac, cookieMAC(cur, stamp, addr, input)) ||
		hmac.Equal(mac, cookieMAC(prev, stamp, addr, input))
}
