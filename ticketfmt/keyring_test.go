package ticketfmt

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestRing(t testing.TB, cfg KeyRingConfig) (*KeyRing, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: t0}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	r, err := NewKeyRing(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

func ringState() *State {
	st := testStates()["psk"]
	st.Timestamp = time.Time{}
	st.SessionCreated = t0
	return st
}

func mustRingSeal(t testing.TB, r *KeyRing, label string) []byte {
	t.Helper()
	ticket, err := r.Seal(ringState(), label)
	if err != nil {
		t.Fatal(err)
	}
	return ticket
}

func TestKeyRingRotation(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{}) // defaults: rotate 24h, keep 24h
	ticket1 := mustRingSeal(t, r, LabelServer)
	key1 := r.Keys()[0]
	if !key1.Created.Equal(t0) || !key1.SealUntil.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("first key %+v", key1)
	}

	// Before the rotation time the same key seals.
	clock.Advance(24*time.Hour - time.Second)
	if got := mustRingSeal(t, r, LabelServer); !bytes.Equal(got[:16], key1.Name[:]) {
		t.Fatal("rotated early")
	}

	// One rotation: key 2 seals, key 1 still opens.
	clock.Advance(2 * time.Second)
	ticket2 := mustRingSeal(t, r, LabelServer)
	keys := r.Keys()
	if len(keys) != 2 || keys[1].Name != key1.Name || keys[0].Name == key1.Name {
		t.Fatalf("after rotation: %+v", keys)
	}
	if !bytes.Equal(ticket2[:16], keys[0].Name[:]) {
		t.Fatal("new ticket not sealed under the new key")
	}
	if !keys[1].SealUntil.Equal(t0.Add(24 * time.Hour)) {
		t.Errorf("key 1 seals until %v", keys[1].SealUntil)
	}
	st, err := r.Open(ticket1, LabelServer)
	if err != nil {
		t.Fatalf("ticket of key 1 after one rotation: %v", err)
	}
	if !st.Timestamp.Equal(t0) || !st.SessionCreated.Equal(t0) {
		t.Errorf("opened state times %v %v", st.Timestamp, st.SessionCreated)
	}

	// Key 1 opens until TicketLifetime after it stopped sealing, then is gone.
	clock.Advance(24*time.Hour - time.Second) // t0+48h
	if _, err := r.Open(ticket1, LabelServer); err != nil {
		t.Fatalf("at the end of key 1's opening time: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := r.Open(ticket1, LabelServer); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after TicketLifetime: %v, want ErrUnknownKey", err)
	}
	if _, err := r.Open(ticket2, LabelServer); err != nil {
		t.Fatalf("ticket of key 2: %v", err)
	}
	// The next Seal retires key 1 from the ring.
	mustRingSeal(t, r, LabelServer)
	for _, k := range r.Keys() {
		if k.Name == key1.Name {
			t.Errorf("key 1 still in the ring: %+v", r.Keys())
		}
	}
}

func TestKeyRingLazyRotation(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{Rotation: time.Hour, TicketLifetime: 2 * time.Hour})
	ticket1 := mustRingSeal(t, r, LabelClient)
	// Idle for 2h30m: the first Seal rotates; key 1 stopped sealing at 1h.
	clock.Advance(150 * time.Minute)
	mustRingSeal(t, r, LabelClient)
	if _, err := r.Open(ticket1, LabelClient); err != nil {
		t.Fatalf("key 1 within 2h of its end: %v", err)
	}
	clock.Advance(31 * time.Minute)
	if _, err := r.Open(ticket1, LabelClient); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key 1 after 3h01m: %v", err)
	}
}

func TestKeyRingForcedRotate(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{})
	ticket1 := mustRingSeal(t, r, LabelServer)
	clock.Advance(time.Hour)
	if err := r.Rotate(); err != nil {
		t.Fatal(err)
	}
	keys := r.Keys()
	if len(keys) != 2 || !keys[1].SealUntil.Equal(t0.Add(time.Hour)) || !keys[0].Created.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after Rotate: %+v", keys)
	}
	ticket2 := mustRingSeal(t, r, LabelServer)
	if bytes.Equal(ticket1[:16], ticket2[:16]) {
		t.Fatal("Rotate did not change the sealing key")
	}
	clock.Advance(24 * time.Hour)
	if _, err := r.Open(ticket1, LabelServer); err != nil {
		t.Fatalf("24h after forced rotation: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := r.Open(ticket1, LabelServer); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after TicketLifetime: %v", err)
	}
}

func TestKeyRingRotatesBeforeNonceLimit(t *testing.T) {
	r, _ := newTestRing(t, KeyRingConfig{})
	first := r.Keys()[0].Name
	r.keys[0].key.seals.Store(ringRotateAfter)
	if got := mustRingSeal(t, r, LabelServer); bytes.Equal(got[:16], first[:]) {
		t.Error("ring sealed past its per-key limit")
	}
}

func TestKeyRingSeal(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{})
	clock.Advance(90 * time.Minute)
	st := ringState()
	st.Timestamp = t0.Add(-99 * time.Hour)
	before := *st
	ticket, err := r.Seal(st, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if !stateEqual(st, &before) {
		t.Error("Seal modified its argument")
	}
	got, err := r.Open(ticket, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Timestamp.Equal(t0.Add(90 * time.Minute)) {
		t.Errorf("Timestamp = %v, want the ring's clock", got.Timestamp)
	}
	want := *st
	want.Timestamp = got.Timestamp
	if !stateEqual(got, &want) {
		t.Errorf("opened %+v\nwant %+v", got, &want)
	}
	if _, err := r.Open(ticket, LabelClient); !errors.Is(err, ErrAuth) {
		t.Errorf("label mismatch: %v", err)
	}
	checkTamperedFails(t, ticket, func(b []byte) error {
		_, err := r.Open(b, LabelServer)
		return err
	})

	noCreated := ringState()
	noCreated.SessionCreated = time.Time{}
	if _, err := r.Seal(noCreated, LabelServer); err == nil {
		t.Error("Seal accepted a state without SessionCreated")
	}
	if _, err := r.Seal(nil, LabelServer); err == nil {
		t.Error("Seal accepted nil")
	}
	bad := ringState()
	bad.Peer.Type = 9
	if _, err := r.Seal(bad, LabelServer); err == nil {
		t.Error("Seal accepted an unencodable state")
	}
	// A sealed state that does not parse (foreign format) is ErrMalformed.
	k := r.keys[0].key
	foreign, err := k.Seal([]byte{2, 0, 0}, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(foreign, LabelServer); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "format_version") {
		t.Errorf("foreign state: %v", err)
	}
}

func TestKeyRingConfig(t *testing.T) {
	if _, err := NewKeyRing(KeyRingConfig{Rotation: -1}); err == nil {
		t.Error("negative Rotation accepted")
	}
	if _, err := NewKeyRing(KeyRingConfig{TicketLifetime: -1}); err == nil {
		t.Error("negative TicketLifetime accepted")
	}
	if _, err := NewKeyRing(KeyRingConfig{Rand: iotest.ErrReader(io.ErrUnexpectedEOF)}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("failing Rand: %v", err)
	}
	// Rand supplies the key bytes.
	r, err := NewKeyRing(KeyRingConfig{Rand: bytes.NewReader(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Keys()[0].Name != mustKey(t, testSecret).Name {
		t.Error("key not read from Rand")
	}
	if err := r.Rotate(); err == nil {
		t.Error("Rotate succeeded with an exhausted Rand")
	}
	// Default clock: a real ring seals and opens.
	r, err = NewKeyRing(KeyRingConfig{})
	if err != nil {
		t.Fatal(err)
	}
	st := ringState()
	st.SessionCreated = time.Now()
	ticket, err := r.Seal(st, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Open(ticket, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if got.Expired(time.Now(), 7*24*time.Hour) {
		t.Error("fresh ticket expired")
	}
	if d := time.Since(got.Timestamp); d < 0 || d > time.Minute {
		t.Errorf("Timestamp %v is not now", got.Timestamp)
	}
}

func TestKeyRingExportImport(t *testing.T) {
	a, clock := newTestRing(t, KeyRingConfig{})
	b, err := NewKeyRing(KeyRingConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ticketA1 := mustRingSeal(t, a, LabelServer)
	clock.Advance(time.Hour)
	if err := a.Rotate(); err != nil {
		t.Fatal(err)
	}
	ticketA2 := mustRingSeal(t, a, LabelServer)
	bOwn := b.Keys()[0]

	exported := a.Export()
	if len(exported) != 2 {
		t.Fatalf("exported %d keys", len(exported))
	}
	for i, info := range a.Keys() {
		if exported[i].KeyInfo != info {
			t.Errorf("Export[%d] = %v, Keys()[%d] = %+v", i, exported[i], i, info)
		}
		if k := mustKey(t, exported[i].Secret[:]); k.Name != info.Name {
			t.Errorf("exported secret %d does not match its name", i)
		}
	}

	if err := b.Import(exported); err != nil {
		t.Fatal(err)
	}
	for _, ticket := range [][]byte{ticketA1, ticketA2} {
		if _, err := b.Open(ticket, LabelServer); err != nil {
			t.Errorf("b cannot open a's ticket: %v", err)
		}
	}
	keys := b.Keys()
	if len(keys) != 3 || keys[0].Name != exported[0].Name {
		t.Fatalf("b after import: %+v", keys)
	}
	// b's own key was superseded by a newer one: it stopped sealing now.
	for _, k := range keys {
		if k.Name == bOwn.Name && !k.SealUntil.Equal(clock.Now()) {
			t.Errorf("b's own key after import: %+v", k)
		}
	}
	ticketB := mustRingSeal(t, b, LabelServer)
	if !bytes.Equal(ticketB[:16], exported[0].Name[:]) {
		t.Error("b does not seal with the newest key")
	}
	if _, err := a.Open(ticketB, LabelServer); err != nil {
		t.Errorf("a cannot open b's ticket: %v", err)
	}

	// Re-importing is idempotent; imported times replace local ones.
	if err := b.Import(exported); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Keys()); n != 3 {
		t.Errorf("%d keys after re-import", n)
	}
	changed := a.Export()[:1]
	changed[0].SealUntil = clock.Now().Add(time.Minute)
	if err := b.Import(changed); err != nil {
		t.Fatal(err)
	}
	if got := b.Keys()[0].SealUntil; !got.Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("SealUntil after import %v", got)
	}

	// Bad input changes nothing.
	before := b.Keys()
	wrongName := a.Export()
	wrongName[1].Name[0] ^= 1
	bad := [][]ExportedKey{
		wrongName,
		{{KeyInfo: KeyInfo{Name: exported[0].Name, Created: t0, SealUntil: t0.Add(-time.Second)}, Secret: exported[0].Secret}},
	}
	for i, keys := range bad {
		err := b.Import(keys)
		if err == nil {
			t.Errorf("bad import %d accepted", i)
			continue
		}
		for _, k := range keys {
			if strings.Contains(err.Error(), string(k.Secret[:])) || strings.Contains(err.Error(), hex.EncodeToString(k.Secret[:])) {
				t.Errorf("import error shows a secret: %v", err)
			}
		}
	}
	if after := b.Keys(); len(after) != len(before) || after[0] != before[0] {
		t.Error("a failed Import changed the ring")
	}

	// Expired imported keys are dropped at once.
	clock.Advance(72 * time.Hour)
	stale := a.Export()
	c, err := NewKeyRing(KeyRingConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Import(stale); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Keys()); n != 1 {
		t.Errorf("%d keys after importing stale ones", n)
	}
}

func TestKeyRingConcurrent(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{Rotation: time.Minute, TicketLifetime: time.Hour})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ticket, err := r.Seal(ringState(), LabelServer)
				if err != nil {
					errs <- err
					return
				}
				if _, err := r.Open(ticket, LabelServer); err != nil {
					errs <- err
					return
				}
				switch {
				case g == 0 && i%10 == 0:
					clock.Advance(7 * time.Second)
				case g == 1 && i%50 == 0:
					if err := r.Rotate(); err != nil {
						errs <- err
						return
					}
				case g == 2:
					_ = r.Keys()
				case g == 3 && i%20 == 0:
					if err := r.Import(r.Export()); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDeriveClientKey(t *testing.T) {
	psk := unhex("1234567890abcdef1234567890abcdef")
	got, err := DeriveClientKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 5869 by hand: PRK = HMAC(salt = 32 zero bytes, IKM);
	// OKM = T(1)[0:16], T(1) = HMAC(PRK, info || 0x01).
	ext := hmac.New(sha256.New, make([]byte, sha256.Size))
	ext.Write(psk)
	exp := hmac.New(sha256.New, ext.Sum(nil))
	exp.Write([]byte("dtlsresume client ticket key v1\x01"))
	if want := exp.Sum(nil)[:16]; !bytes.Equal(got[:], want) {
		t.Errorf("DeriveClientKey = %x, want %x", got, want)
	}
	// The same value from an independent HKDF (Python cryptography / OpenSSL).
	if want := unhex("91cd869b6dfb88be752fcabe09679817"); !bytes.Equal(got[:], want) {
		t.Errorf("DeriveClientKey = %x, want %x", got, want)
	}
	other, err := DeriveClientKey(append(bytes.Clone(psk), 0))
	if err != nil {
		t.Fatal(err)
	}
	if other == got {
		t.Error("different credentials give the same key")
	}
	if _, err := DeriveClientKey(nil); err == nil {
		t.Error("empty credential accepted")
	}
	if _, err := NewKey(got[:]); err != nil {
		t.Errorf("derived key unusable: %v", err)
	}
}

func TestClientHandle(t *testing.T) {
	key := [16]byte(testSecret)
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte("dtls csso handle"))
	h := ClientHandle(key)
	if !bytes.Equal(h[:], mac.Sum(nil)[:16]) {
		t.Errorf("ClientHandle = %x", h)
	}
	if h == mustKey(t, key[:]).Name {
		t.Error("handle equals the key name")
	}
	if ClientHandle([16]byte{}) == h {
		t.Error("handle does not depend on the key")
	}
}
