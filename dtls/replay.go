package dtls

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// unverifiedResumptions lets each session have one cookie-less resumption
// at a time: while one runs, and for a window after one failed, another
// cookie-less attempt at the same session (a captured hello replayed from
// other addresses, or new hellos built around a captured ticket) must show
// its address with a cookie first. Replays then cost the server a
// stateless HelloVerifyRequest and nothing more, while a device that
// resumes again and again skips the cookie every time its previous
// resumption completed (docs/decisions.md, "Replayed resumptions").
type unverifiedResumptions struct {
	window time.Duration

	mu     sync.Mutex
	state  map[[16]byte]time.Time // zero: running; else when it failed
	failed [][16]byte             // failures in insertion order, for eviction
	next   int
}

// unverifiedFailuresKept bounds the failed sessions remembered (64Ki
// entries, a few MiB); the oldest are forgotten first.
const unverifiedFailuresKept = 1 << 16

func newUnverifiedResumptions(window time.Duration) *unverifiedResumptions {
	return &unverifiedResumptions{window: window, state: make(map[[16]byte]time.Time)}
}

// resumptionKey names the session a hello resumes: its ticket, session ID
// or client_state handle, by type.
func (ch *clientHelloInfo) resumptionKey() [16]byte {
	h := sha256.New()
	h.Write([]byte{byte(ch.attempted)})
	switch ch.attempted {
	case negotiation.ClientState:
		h.Write(ch.offer.Handle)
	case negotiation.SessionTicket:
		h.Write(ch.ticket)
	case negotiation.SessionID:
		h.Write(ch.hello.sessionID)
	}
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// blocked reports whether a cookie-less resumption of key must take a
// cookie instead.
func (u *unverifiedResumptions) blocked(key [16]byte, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.blockedLocked(key, now)
}

func (u *unverifiedResumptions) blockedLocked(key [16]byte, now time.Time) bool {
	at, ok := u.state[key]
	return ok && (at.IsZero() || now.Sub(at) < u.window)
}

// start records a cookie-less resumption of key as running and reports
// whether it may go ahead.
func (u *unverifiedResumptions) start(key [16]byte, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.blockedLocked(key, now) {
		return false
	}
	u.state[key] = time.Time{}
	return true
}

// end records how a cookie-less resumption of key ended: a completed one
// leaves nothing behind, a failed one blocks the session for the window.
func (u *unverifiedResumptions) end(key [16]byte, ok bool, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ok {
		delete(u.state, key)
		return
	}
	u.state[key] = now
	if len(u.failed) < unverifiedFailuresKept {
		u.failed = append(u.failed, key)
		return
	}
	old := u.failed[u.next]
	if at, ok := u.state[old]; ok && !at.IsZero() && old != key {
		delete(u.state, old)
	}
	u.failed[u.next] = key
	u.next = (u.next + 1) % unverifiedFailuresKept
}
