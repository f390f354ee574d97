package dtls

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// unverifiedResumptions lets each session have few cookie-less
// resumptions at a time: while maxUnverifiedPerSession run, and for a
// window after one failed, another cookie-less attempt at the same session
// (a captured hello replayed from other addresses, or new hellos built
// around a captured ticket) must show its address with a cookie first.
// Replays then cost the server a stateless HelloVerifyRequest and nothing
// more, while a device that resumes again and again skips the cookie every
// time its previous resumption completed, even when it dials again before
// the server has read its last Finished (docs/decisions.md 38).
type unverifiedResumptions struct {
	window time.Duration

	mu     sync.Mutex
	state  map[[16]byte]*unverifiedSession
	failed [][16]byte // failures in insertion order, for eviction
	next   int
}

type unverifiedSession struct {
	running int
	failed  time.Time // zero: none failed within the window
}

// maxUnverifiedPerSession is how many cookie-less resumptions of one
// session may run at once: the genuine one and its client's next.
const maxUnverifiedPerSession = 2

// unverifiedFailuresKept bounds the failed sessions remembered (64Ki
// entries, a few MiB); the oldest are forgotten first.
const unverifiedFailuresKept = 1 << 16

func newUnverifiedResumptions(window time.Duration) *unverifiedResumptions {
	return &unverifiedResumptions{window: window, state: make(map[[16]byte]*unverifiedSession)}
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
	e := u.state[key]
	return e != nil && (e.running >= maxUnverifiedPerSession || (!e.failed.IsZero() && now.Sub(e.failed) < u.window))
}

// start records a cookie-less resumption of key as running and reports
// whether it may go ahead.
func (u *unverifiedResumptions) start(key [16]byte, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.blockedLocked(key, now) {
		return false
	}
	e := u.state[key]
	if e == nil {
		e = &unverifiedSession{}
		u.state[key] = e
	}
	e.running++
	return true
}

// end records how a cookie-less resumption of key ended: a completed one
// leaves nothing behind, a failed one blocks the session for the window.
func (u *unverifiedResumptions) end(key [16]byte, ok bool, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.state[key]
	if e == nil {
		return
	}
	e.running--
	if ok {
		if e.running <= 0 && e.failed.IsZero() {
			delete(u.state, key)
		}
		return
	}
	e.failed = now
	if len(u.failed) < unverifiedFailuresKept {
		u.failed = append(u.failed, key)
		return
	}
	// Forget the oldest failure that nothing is running on.
	old := u.failed[u.next]
	if o := u.state[old]; o != nil && o.running <= 0 && old != key {
		delete(u.state, old)
	}
	u.failed[u.next] = key
	u.next = (u.next + 1) % unverifiedFailuresKept
}
