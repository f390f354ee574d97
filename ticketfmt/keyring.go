package ticketfmt

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of KeyRingConfig: a key seals for a day and then opens tickets
// for another, as long as the engine's default session lifetime (24 h), so
// a ticket stays openable for as long as it may be resumed.
const (
	DefaultRotation       = 24 * time.Hour
	DefaultTicketLifetime = 24 * time.Hour
)

// KeyRingConfig configures a KeyRing. Zero fields take their defaults.
type KeyRingConfig struct {
	// Rotation is how long a key seals tickets before a new one takes over
	// (default 24h).
	Rotation time.Duration
	// TicketLifetime is how long a key still opens tickets after it stopped
	// sealing (default 24h). Keep State.Lifetime at most this long, or
	// tickets become unopenable before they expire.
	TicketLifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the source of new keys (default crypto/rand.Reader). Nonces
	// always come from crypto/rand.
	Rand io.Reader

	// Keys, if set, are the keys the ring starts with (for example those a
	// store saved before a restart), as Import would merge them into an
	// empty ring; keys past their opening time are left out, and a fresh
	// key is generated only when none is left (or, unless Managed, at the
	// first Seal when none may seal any more).
	Keys []ExportedKey

	// Managed makes the ring follow a key schedule set from outside, by
	// SyncKeys, as servers that share their ticket keys through a store do
	// (package store's SyncKeyRing). A managed ring generates its first key
	// and no other (except when a key reaches its per-key seal limit): when
	// the current key's sealing time is over and no newer key has arrived,
	// it keeps sealing with it rather than with a key the other servers do
	// not know, and it always opens the tickets of its current key. Rotate
	// fails on a managed ring.
	Managed bool
	// OnChange, if set, is called after the ring's set of keys or their
	// schedule changed (a key generated, imported, synced or retired), outside
	// the ring's lock, on the goroutine that made the change (often one
	// sealing a ticket): it must not block. A store that persists the ring
	// uses it to save it.
	OnChange func()
	// OnUnknownKey, if set, is called when Open meets a ticket whose key
	// name the ring does not hold, outside the ring's lock: it must not block.
	// A ring that follows a shared schedule uses it to fetch keys it may have
	// missed (anyone can send such tickets: rate-limit what it triggers).
	OnUnknownKey func(name [KeyNameSize]byte)
}

// KeyInfo describes a key of a KeyRing without its secret.
type KeyInfo struct {
	Name    [KeyNameSize]byte
	Created time.Time
	// NotBefore is when the key starts sealing: Created for a key the ring
	// made itself; a key published ahead to a cluster starts later. The key
	// opens tickets as soon as the ring holds it.
	NotBefore time.Time
	SealUntil time.Time // when the key stops (or stopped) sealing; it opens tickets until SealUntil+TicketLifetime
}

// ExportedKey is a key of a KeyRing including its SECRET, for sharing a ring
// among servers through a store (Export, Import, SyncKeys). Anyone holding it
// can open and forge tickets: protect it like the ring itself. String and
// GoString omit the secret.
type ExportedKey struct {
	KeyInfo
	Secret [KeySize]byte
}

// String describes e without its secret.
func (e ExportedKey) String() string {
	return fmt.Sprintf("ticketfmt.ExportedKey{Name: %x, Created: %v, NotBefore: %v, SealUntil: %v}", e.Name, e.Created, e.NotBefore, e.SealUntil)
}

// GoString is String, for %#v.
func (e ExportedKey) GoString() string { return e.String() }

// KeyRingStats counts a ring's work since it was made.
type KeyRingStats struct {
	Sealed     uint64 // tickets sealed
	Opened     uint64 // tickets opened (authenticated and parsed)
	UnknownKey uint64 // tickets naming a key the ring does not hold (or no longer opens with)
	Rejected   uint64 // tickets that were malformed or failed authentication
}

// ringKey is a key in a ring with its schedule.
type ringKey struct {
	key       *Key
	created   time.Time
	notBefore time.Time
	sealUntil time.Time
	// demoted keys never seal again: keys a managed ring holds that the
	// shared schedule does not list.
	demoted bool
}

// KeyRing is a server's set of ticket keys: one current key that seals, and
// other keys kept to open the tickets they sealed until those expire, and
// possibly keys that will start sealing later (NotBefore). The current key
// is, among the keys whose NotBefore has come, the one with the latest
// NotBefore (then the latest Created). Keys rotate on a schedule, checked
// whenever Seal runs, or on demand (Rotate); a Managed ring follows a
// schedule set from outside instead. A KeyRing is safe for concurrent use.
type KeyRing struct {
	rotation, lifetime time.Duration
	now                func() time.Time
	rand               io.Reader
	managed            bool
	onChange           func()
	onUnknown          func([KeyNameSize]byte)

	mu sync.RWMutex
	// keys are ordered by NotBefore, newest first, then by Created, newest
	// first: keys not yet sealing come first. Without such keys, keys[0] is
	// the current key.
	keys []*ringKey
	cur  *ringKey // the key that was current when the ring last changed

	sealed, opened, unknownKey, rejected atomic.Uint64
}

// NewKeyRing returns a ring with one freshly generated key.
func NewKeyRing(cfg KeyRingConfig) (*KeyRing, error) {
	if cfg.Rotation < 0 || cfg.TicketLifetime < 0 {
		return nil, errors.New("ticketfmt: KeyRingConfig: negative duration")
	}
	r := &KeyRing{rotation: cfg.Rotation, lifetime: cfg.TicketLifetime, now: cfg.Now, rand: cfg.Rand,
		managed: cfg.Managed, onChange: cfg.OnChange, onUnknown: cfg.OnUnknownKey}
	if r.rotation == 0 {
		r.rotation = DefaultRotation
	}
	if r.lifetime == 0 {
		r.lifetime = DefaultTicketLifetime
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.rand == nil {
		r.rand = rand.Reader
	}
	now := r.clock()
	if len(cfg.Keys) > 0 {
		fresh, err := parseExported("NewKeyRing", cfg.Keys)
		if err != nil {
			return nil, err
		}
		for _, f := range fresh {
			if !slices.ContainsFunc(r.keys, func(e *ringKey) bool { return e.key.Name == f.key.Name }) {
				r.keys = append(r.keys, f)
			}
		}
		r.sortLocked()
		r.cur = r.currentLocked(now)
		r.retireLocked(now)
		if now.After(r.cur.sealUntil.Add(r.lifetime)) {
			r.keys = nil
			r.cur = nil
		}
	}
	if len(r.keys) == 0 {
		if err := r.rotateLocked(now); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Rotation is how long a key seals before the next one takes over.
func (r *KeyRing) Rotation() time.Duration { return r.rotation }

// TicketLifetime is how long a key opens tickets after it stopped sealing.
func (r *KeyRing) TicketLifetime() time.Duration { return r.lifetime }

// Managed reports whether the ring follows a schedule set by SyncKeys.
func (r *KeyRing) Managed() bool { return r.managed }

// Now is the ring's clock, without its monotonic part.
func (r *KeyRing) Now() time.Time { return r.clock() }

// Stats returns the ring's counters.
func (r *KeyRing) Stats() KeyRingStats {
	return KeyRingStats{Sealed: r.sealed.Load(), Opened: r.opened.Load(), UnknownKey: r.unknownKey.Load(), Rejected: r.rejected.Load()}
}

// clock reads the clock without its monotonic part, so that imported and
// local times compare alike.
func (r *KeyRing) clock() time.Time { return r.now().Round(0) }

func (r *KeyRing) changed() {
	if r.onChange != nil {
		r.onChange()
	}
}

// Seal marshals st, with Timestamp set to the ring's current time, and seals
// it under the current key. It first rotates if the current key's sealing
// time is over and retires keys that stopped sealing more than TicketLifetime
// ago. st itself is not modified. st.SessionCreated must be set: for a new
// session it is the time of the full handshake, for a refreshed ticket the
// value from the old one.
func (r *KeyRing) Seal(st *State, label string) ([]byte, error) {
	if st == nil {
		return nil, errors.New("ticketfmt: KeyRing.Seal: nil State")
	}
	if st.SessionCreated.IsZero() {
		return nil, errors.New("ticketfmt: KeyRing.Seal: SessionCreated not set")
	}
	now := r.clock()
	stamped := *st
	stamped.Timestamp = now
	plain, err := stamped.Marshal()
	if err != nil {
		return nil, err
	}

	r.mu.Lock()
	now = r.clock() // under the lock, so that the ring's changes are in clock order
	changed := r.updateCurrentLocked(now)
	cur := r.cur
	overLimit := cur.key.seals.Load() >= ringRotateAfter
	if overLimit || (!r.managed && !now.Before(cur.sealUntil)) {
		if err := r.rotateLocked(now); err != nil {
			r.mu.Unlock()
			return nil, err
		}
		changed = true
	}
	if r.retireLocked(now) {
		changed = true
	}
	k := r.cur.key
	r.mu.Unlock()
	if changed {
		r.changed()
	}

	t, err := k.Seal(plain, label)
	if err == nil {
		r.sealed.Add(1)
	}
	return t, err
}

// Open opens a ticket sealed by any key of the ring that may still open
// tickets, and parses its state. Errors wrap ErrMalformed, ErrUnknownKey or
// ErrAuth. Open does not check the state's expiry: see State.Expired.
func (r *KeyRing) Open(ticket []byte, label string) (*State, error) {
	name, nonce, sealed, err := parseTicket(ticket)
	if err != nil {
		r.rejected.Add(1)
		return nil, err
	}
	now := r.clock()
	var k *Key
	held := false
	r.mu.RLock()
	for _, e := range r.keys {
		if subtle.ConstantTimeCompare(e.key.Name[:], name[:]) == 1 {
			held = true
			if !now.After(e.sealUntil.Add(r.lifetime)) || (r.managed && e == r.cur) {
				k = e.key
			}
			break
		}
	}
	r.mu.RUnlock()
	if k == nil {
		r.unknownKey.Add(1)
		if !held && r.onUnknown != nil {
			r.onUnknown(name)
		}
		return nil, unknownKey(name)
	}
	plain, err := k.open(nonce, sealed, label)
	if err != nil {
		r.rejected.Add(1)
		return nil, err
	}
	st, err := ParseState(plain)
	if err != nil {
		r.rejected.Add(1)
		return nil, err
	}
	r.opened.Add(1)
	return st, nil
}

// Rotate makes a freshly generated key current now; the previous one stops
// sealing and opens its tickets for TicketLifetime more. A managed ring
// refuses: its keys come from its shared schedule.
func (r *KeyRing) Rotate() error {
	if r.managed {
		return errors.New("ticketfmt: KeyRing.Rotate: a managed ring rotates through its shared schedule")
	}
	r.mu.Lock()
	now := r.clock()
	r.updateCurrentLocked(now)
	if err := r.rotateLocked(now); err != nil {
		r.mu.Unlock()
		return err
	}
	r.retireLocked(now)
	r.mu.Unlock()
	r.changed()
	return nil
}

// Keys describes the ring's keys: the current one first, then the others
// in the ring's order (keys that will seal later, then the older ones, newest
// first).
func (r *KeyRing) Keys() []KeyInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ordered := r.orderedLocked(r.clock())
	out := make([]KeyInfo, len(ordered))
	for i, e := range ordered {
		out[i] = e.info()
	}
	return out
}

// Export returns the ring's keys, SECRETS INCLUDED, in the order of Keys, for
// a store that shares them with other servers. See ExportedKey.
func (r *KeyRing) Export() []ExportedKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ordered := r.orderedLocked(r.clock())
	out := make([]ExportedKey, len(ordered))
	for i, e := range ordered {
		out[i] = ExportedKey{KeyInfo: e.info(), Secret: e.key.secret}
	}
	return out
}

// orderedLocked is the ring's keys with the current one first.
func (r *KeyRing) orderedLocked(now time.Time) []*ringKey {
	cur := r.currentLocked(now)
	out := make([]*ringKey, 0, len(r.keys))
	out = append(out, cur)
	for _, e := range r.keys {
		if e != cur {
			out = append(out, e)
		}
	}
	return out
}

// parseExported checks exported keys and makes ring keys of them.
func parseExported(op string, keys []ExportedKey) ([]*ringKey, error) {
	fresh := make([]*ringKey, 0, len(keys))
	for i := range keys {
		ek := &keys[i]
		k, err := NewKey(ek.Secret[:])
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare(k.Name[:], ek.Name[:]) != 1 {
			return nil, fmt.Errorf("ticketfmt: %s: key %d: name %x does not match its secret", op, i, ek.Name)
		}
		notBefore := ek.NotBefore
		if notBefore.IsZero() {
			notBefore = ek.Created
		}
		if notBefore.Before(ek.Created) {
			return nil, fmt.Errorf("ticketfmt: %s: key %x: NotBefore before Created", op, ek.Name)
		}
		if ek.SealUntil.Before(notBefore) {
			return nil, fmt.Errorf("ticketfmt: %s: key %x: SealUntil before Created or NotBefore", op, ek.Name)
		}
		fresh = append(fresh, &ringKey{key: k, created: ek.Created.Round(0), notBefore: notBefore.Round(0), sealUntil: ek.SealUntil.Round(0)})
	}
	return fresh, nil
}

// mergeLocked adds fresh keys to the ring, or updates the schedule of keys
// it holds, and returns the ring's keys that were in fresh.
func (r *KeyRing) mergeLocked(fresh []*ringKey) map[*ringKey]bool {
	in := make(map[*ringKey]bool, len(fresh))
	for _, f := range fresh {
		if i := slices.IndexFunc(r.keys, func(e *ringKey) bool { return e.key.Name == f.key.Name }); i >= 0 {
			e := r.keys[i]
			e.created, e.notBefore, e.sealUntil = f.created, f.notBefore, f.sealUntil
			in[e] = true
		} else {
			r.keys = append(r.keys, f)
			in[f] = true
		}
	}
	r.sortLocked()
	return in
}

// Import merges exported keys (from this or another ring) into r. A key r
// already holds takes the imported Created, NotBefore and SealUntil; a zero
// NotBefore means Created. A key whose NotBefore is still to come opens
// tickets at once and seals from NotBefore on. Afterwards the current key is
// chosen again (see KeyRing); if that is not the previous current key, the
// previous one stops sealing now. Keys past their opening time are retired.
// Each Name must match its Secret, and Created <= NotBefore <= SealUntil; on
// any error nothing changes.
func (r *KeyRing) Import(keys []ExportedKey) error {
	fresh, err := parseExported("Import", keys)
	if err != nil {
		return err
	}
	r.mu.Lock()
	now := r.clock()
	r.mergeLocked(fresh)
	r.updateCurrentLocked(now)
	r.retireLocked(now)
	r.mu.Unlock()
	r.changed()
	return nil
}

// SyncKeys makes the ring follow keys, the complete schedule that a cluster
// of servers shares (package store publishes it): each key in it is added
// or updated as by Import; a key the ring holds that is not in it (the
// ring's own first key, or a key since dropped from the schedule) never
// seals again and opens tickets until its SealUntil, at the latest now, plus
// TicketLifetime. The current key is the scheduled key with the latest
// NotBefore that has come, so every ring that follows the same schedule
// seals with the same key at the same time, and each opens the tickets of
// every key in it, including keys that start sealing later. An empty
// schedule changes nothing. Errors are those of Import; on any error nothing
// changes.
func (r *KeyRing) SyncKeys(keys []ExportedKey) error {
	if len(keys) == 0 {
		return nil
	}
	fresh, err := parseExported("SyncKeys", keys)
	if err != nil {
		return err
	}
	r.mu.Lock()
	now := r.clock()
	in := r.mergeLocked(fresh)
	for _, e := range r.keys {
		e.demoted = !in[e]
		if e.demoted {
			e.stopSealing(now)
		}
	}
	r.updateCurrentLocked(now)
	r.retireLocked(now)
	r.mu.Unlock()
	r.changed()
	return nil
}

// sortLocked orders the keys by NotBefore, then Created, newest first.
func (r *KeyRing) sortLocked() {
	slices.SortStableFunc(r.keys, func(a, b *ringKey) int {
		if c := b.notBefore.Compare(a.notBefore); c != 0 {
			return c
		}
		return b.created.Compare(a.created)
	})
}

// currentLocked is the key that seals at now: the first (newest) key whose
// NotBefore has come and that is not demoted; failing that, the newest
// whose NotBefore has come; failing that, the one that starts first.
func (r *KeyRing) currentLocked(now time.Time) *ringKey {
	var fallback *ringKey
	for _, e := range r.keys {
		if e.notBefore.After(now) {
			continue
		}
		if !e.demoted {
			return e
		}
		if fallback == nil {
			fallback = e
		}
	}
	if fallback != nil {
		return fallback
	}
	return r.keys[len(r.keys)-1]
}

// updateCurrentLocked makes r.cur the key current at now; the previous one
// stops sealing now if it was to seal longer. It reports a change.
func (r *KeyRing) updateCurrentLocked(now time.Time) bool {
	c := r.currentLocked(now)
	if c == r.cur {
		return false
	}
	if r.cur != nil && slices.Contains(r.keys, r.cur) {
		r.cur.stopSealing(now)
	}
	r.cur = c
	return true
}

// rotateLocked makes a new key current.
func (r *KeyRing) rotateLocked(now time.Time) error {
	var secret [KeySize]byte
	if _, err := io.ReadFull(r.rand, secret[:]); err != nil {
		return fmt.Errorf("ticketfmt: generating a ticket key: %w", err)
	}
	k, err := NewKey(secret[:])
	clear(secret[:])
	if err != nil {
		return err
	}
	if r.cur != nil {
		r.cur.stopSealing(now)
	}
	e := &ringKey{key: k, created: now, notBefore: now, sealUntil: now.Add(r.rotation)}
	r.keys = append(r.keys, e)
	r.sortLocked()
	r.cur = e
	return nil
}

// retireLocked drops every key but the current one that stopped sealing more
// than TicketLifetime before now, and reports whether it dropped any.
func (r *KeyRing) retireLocked(now time.Time) bool {
	n := len(r.keys)
	r.keys = slices.DeleteFunc(r.keys, func(e *ringKey) bool {
		return e != r.cur && now.After(e.sealUntil.Add(r.lifetime))
	})
	return len(r.keys) != n
}

// stopSealing ends e's sealing time at now if it was to seal longer (never
// before its NotBefore, should the clock have gone back).
func (e *ringKey) stopSealing(now time.Time) {
	if now.Before(e.notBefore) {
		now = e.notBefore
	}
	if e.sealUntil.After(now) {
		e.sealUntil = now
	}
}

func (e *ringKey) info() KeyInfo {
	return KeyInfo{Name: e.key.Name, Created: e.created, NotBefore: e.notBefore, SealUntil: e.sealUntil}
}

// clientKeyInfo is the HKDF info of DeriveClientKey.
const clientKeyInfo = "dtlsresume client ticket key v1"

// DeriveClientKey derives a client's ticket key from its long-term credential
// (its PSK, or an encoding of its private key that never changes) with
// HKDF-SHA256, no salt, info "dtlsresume client ticket key v1"
// (docs/decisions.md 25). The credential must not be empty.
func DeriveClientKey(credential []byte) ([KeySize]byte, error) {
	var key [KeySize]byte
	if len(credential) == 0 {
		return key, errors.New("ticketfmt: DeriveClientKey: empty credential")
	}
	out, err := hkdf.Key(sha256.New, credential, nil, clientKeyInfo, KeySize)
	if err != nil {
		return key, fmt.Errorf("ticketfmt: DeriveClientKey: %w", err)
	}
	copy(key[:], out)
	clear(out)
	return key, nil
}

// ClientHandle returns the public 16-byte client_state handle of a client
// whose ticket key is key: HMAC-SHA256(key, "dtls csso handle")[0:16]. It
// differs from the key's name, HMAC-SHA256(key, "key name")[0:16].
func ClientHandle(key [KeySize]byte) [16]byte {
	return hmac16(key[:], "dtls csso handle")
}
