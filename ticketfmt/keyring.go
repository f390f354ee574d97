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
	"time"
)

// Defaults of KeyRingConfig (DESIGN.md decision 9).
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
}

// KeyInfo describes a key of a KeyRing without its secret.
type KeyInfo struct {
	Name      [KeyNameSize]byte
	Created   time.Time
	SealUntil time.Time // when the key stops (or stopped) sealing; it opens tickets until SealUntil+TicketLifetime
}

// ExportedKey is a key of a KeyRing including its SECRET, for sharing a ring
// among servers through a store (Export, Import). Anyone holding it can open
// and forge tickets: protect it like the ring itself. String and GoString
// omit the secret.
type ExportedKey struct {
	KeyInfo
	Secret [KeySize]byte
}

// String describes e without its secret.
func (e ExportedKey) String() string {
	return fmt.Sprintf("ticketfmt.ExportedKey{Name: %x, Created: %v, SealUntil: %v}", e.Name, e.Created, e.SealUntil)
}

// GoString is String, for %#v.
func (e ExportedKey) GoString() string { return e.String() }

// ringKey is a key in a ring with its schedule.
type ringKey struct {
	key       *Key
	created   time.Time
	sealUntil time.Time
}

// KeyRing is a server's set of ticket keys: one current key that seals, and
// older keys kept to open the tickets they sealed until those expire. Keys
// rotate on a schedule, checked whenever Seal runs, or on demand (Rotate). A
// KeyRing is safe for concurrent use.
type KeyRing struct {
	rotation, lifetime time.Duration
	now                func() time.Time
	rand               io.Reader

	mu   sync.RWMutex
	keys []*ringKey // keys[0] is current; the rest newest first
}

// NewKeyRing returns a ring with one freshly generated key.
func NewKeyRing(cfg KeyRingConfig) (*KeyRing, error) {
	if cfg.Rotation < 0 || cfg.TicketLifetime < 0 {
		return nil, errors.New("ticketfmt: KeyRingConfig: negative duration")
	}
	r := &KeyRing{rotation: cfg.Rotation, lifetime: cfg.TicketLifetime, now: cfg.Now, rand: cfg.Rand}
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
	if err := r.rotateLocked(r.clock()); err != nil {
		return nil, err
	}
	return r, nil
}

// clock reads the clock without its monotonic part, so that imported and
// local times compare alike.
func (r *KeyRing) clock() time.Time { return r.now().Round(0) }

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
	cur := r.keys[0]
	if !now.Before(cur.sealUntil) || cur.key.seals.Load() >= ringRotateAfter {
		if err := r.rotateLocked(now); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	}
	r.retireLocked(now)
	k := r.keys[0].key
	r.mu.Unlock()

	return k.Seal(plain, label)
}

// Open opens a ticket sealed by any key of the ring that may still open
// tickets, and parses its state. Errors wrap ErrMalformed, ErrUnknownKey or
// ErrAuth. Open does not check the state's expiry: see State.Expired.
func (r *KeyRing) Open(ticket []byte, label string) (*State, error) {
	name, nonce, sealed, err := parseTicket(ticket)
	if err != nil {
		return nil, err
	}
	now := r.clock()
	var k *Key
	r.mu.RLock()
	for _, e := range r.keys {
		if subtle.ConstantTimeCompare(e.key.Name[:], name[:]) == 1 {
			if !now.After(e.sealUntil.Add(r.lifetime)) {
				k = e.key
			}
			break
		}
	}
	r.mu.RUnlock()
	if k == nil {
		return nil, unknownKey(name)
	}
	plain, err := k.open(nonce, sealed, label)
	if err != nil {
		return nil, err
	}
	return ParseState(plain)
}

// Rotate makes a freshly generated key current now; the previous one stops
// sealing and opens its tickets for TicketLifetime more.
func (r *KeyRing) Rotate() error {
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.rotateLocked(now); err != nil {
		return err
	}
	r.retireLocked(now)
	return nil
}

// Keys describes the ring's keys, the current one first, then newest first.
func (r *KeyRing) Keys() []KeyInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]KeyInfo, len(r.keys))
	for i, e := range r.keys {
		out[i] = e.info()
	}
	return out
}

// Export returns the ring's keys, SECRETS INCLUDED, in the order of Keys, for
// a store that shares them with other servers. See ExportedKey.
func (r *KeyRing) Export() []ExportedKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]ExportedKey, len(r.keys))
	for i, e := range r.keys {
		out[i] = ExportedKey{KeyInfo: e.info(), Secret: e.key.secret}
	}
	return out
}

// Import merges exported keys (from this or another ring) into r. A key r
// already holds takes the imported Created and SealUntil. Afterwards the most
// recently created key is current; if that is not the previous current key,
// the previous one stops sealing now. Keys past their opening time are
// retired. Each Name must match its Secret; on any error nothing changes.
func (r *KeyRing) Import(keys []ExportedKey) error {
	fresh := make([]*ringKey, 0, len(keys))
	for i := range keys {
		ek := &keys[i]
		k, err := NewKey(ek.Secret[:])
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(k.Name[:], ek.Name[:]) != 1 {
			return fmt.Errorf("ticketfmt: Import: key %d: name %x does not match its secret", i, ek.Name)
		}
		if ek.SealUntil.Before(ek.Created) {
			return fmt.Errorf("ticketfmt: Import: key %x: SealUntil before Created", ek.Name)
		}
		fresh = append(fresh, &ringKey{key: k, created: ek.Created.Round(0), sealUntil: ek.SealUntil.Round(0)})
	}

	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.keys[0]
	for _, f := range fresh {
		if i := slices.IndexFunc(r.keys, func(e *ringKey) bool { return e.key.Name == f.key.Name }); i >= 0 {
			r.keys[i].created, r.keys[i].sealUntil = f.created, f.sealUntil
		} else {
			r.keys = append(r.keys, f)
		}
	}
	slices.SortStableFunc(r.keys, func(a, b *ringKey) int { return b.created.Compare(a.created) })
	if r.keys[0] != prev && prev.sealUntil.After(now) {
		prev.sealUntil = now
	}
	r.retireLocked(now)
	return nil
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
	if len(r.keys) > 0 && r.keys[0].sealUntil.After(now) {
		r.keys[0].sealUntil = now
	}
	r.keys = slices.Insert(r.keys, 0, &ringKey{key: k, created: now, sealUntil: now.Add(r.rotation)})
	return nil
}

// retireLocked drops every key but the current one that stopped sealing more
// than TicketLifetime before now.
func (r *KeyRing) retireLocked(now time.Time) {
	cur := r.keys[0]
	r.keys = slices.DeleteFunc(r.keys, func(e *ringKey) bool {
		return e != cur && now.After(e.sealUntil.Add(r.lifetime))
	})
}

func (e *ringKey) info() KeyInfo {
	return KeyInfo{Name: e.key.Name, Created: e.created, SealUntil: e.sealUntil}
}

// clientKeyInfo is the HKDF info of DeriveClientKey.
const clientKeyInfo = "dtlsresume client ticket key v1"

// DeriveClientKey derives a client's ticket key from its long-term credential
// (its PSK, or an encoding of its private key that never changes) with
// HKDF-SHA256, no salt, info "dtlsresume client ticket key v1" (DESIGN.md
// decision 4). The credential must not be empty.
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
