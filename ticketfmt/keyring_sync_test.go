package ticketfmt

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// exportedKey makes a key with the given schedule.
func exportedKey(t *testing.T, secret byte, created, notBefore, sealUntil time.Time) ExportedKey {
	t.Helper()
	s := bytes.Repeat([]byte{secret}, KeySize)
	k := mustKey(t, s)
	return ExportedKey{KeyInfo: KeyInfo{Name: k.Name, Created: created, NotBefore: notBefore, SealUntil: sealUntil}, Secret: [KeySize]byte(s)}
}

func sealedBy(t *testing.T, r *KeyRing) [KeyNameSize]byte {
	t.Helper()
	return [KeyNameSize]byte(mustRingSeal(t, r, LabelServer)[:KeyNameSize])
}

// TestKeyRingImportNotBefore: an imported key whose NotBefore is to come
// opens tickets at once and seals from NotBefore on.
func TestKeyRingImportNotBefore(t *testing.T) {
	r, clock := newTestRing(t, KeyRingConfig{})
	own := r.Keys()[0]
	next := exportedKey(t, 1, t0, t0.Add(time.Hour), t0.Add(25*time.Hour))
	if err := r.Import([]ExportedKey{next}); err != nil {
		t.Fatal(err)
	}
	if got := sealedBy(t, r); got != own.Name {
		t.Fatal("a key not yet started seals")
	}
	other, _ := newTestRing(t, KeyRingConfig{Now: clock.Now})
	if err := other.Import([]ExportedKey{next}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	ticket := mustRingSeal(t, other, LabelServer)
	if [KeyNameSize]byte(ticket[:16]) != next.Name {
		t.Fatal("the key did not start sealing at NotBefore")
	}
	if got := sealedBy(t, r); got != next.Name {
		t.Fatal("r did not switch at NotBefore")
	}
	keys := r.Keys()
	if keys[0].Name != next.Name || !keys[0].NotBefore.Equal(next.NotBefore) {
		t.Fatalf("keys %+v", keys)
	}
	// The previous key stopped sealing at the switch.
	for _, k := range keys {
		if k.Name == own.Name && !k.SealUntil.Equal(t0.Add(time.Hour)) {
			t.Errorf("own key seals until %v", k.SealUntil)
		}
	}
	bad := exportedKey(t, 2, t0, t0.Add(-time.Second), t0.Add(time.Hour))
	if err := r.Import([]ExportedKey{bad}); err == nil {
		t.Error("NotBefore before Created accepted")
	}
	bad = exportedKey(t, 2, t0, t0.Add(time.Hour), t0.Add(time.Minute))
	if err := r.Import([]ExportedKey{bad}); err == nil {
		t.Error("SealUntil before NotBefore accepted")
	}
}

// TestKeyRingManaged: a managed ring follows SyncKeys, never generates a
// key on its own, keeps sealing with its current key past its time, and
// demotes keys the schedule does not list.
func TestKeyRingManaged(t *testing.T) {
	var changes, unknown atomic.Int32
	clock := &fakeClock{now: t0}
	r, err := NewKeyRing(KeyRingConfig{Now: clock.Now, Managed: true, Rotation: time.Hour, TicketLifetime: time.Hour,
		OnChange: func() { changes.Add(1) }, OnUnknownKey: func([KeyNameSize]byte) { unknown.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Managed() || r.Rotation() != time.Hour || r.TicketLifetime() != time.Hour {
		t.Fatal("accessors")
	}
	own := r.Keys()[0]
	ownTicket := mustRingSeal(t, r, LabelServer)
	if err := r.Rotate(); err == nil {
		t.Error("a managed ring rotated")
	}
	if err := r.SyncKeys(nil); err != nil || changes.Load() != 0 {
		t.Errorf("empty schedule: %v, %d changes", err, changes.Load())
	}

	a := exportedKey(t, 1, t0.Add(-time.Hour), t0.Add(-time.Hour), t0.Add(time.Hour))
	b := exportedKey(t, 2, t0, t0.Add(time.Hour), t0.Add(2*time.Hour))
	if err := r.SyncKeys([]ExportedKey{a, b}); err != nil {
		t.Fatal(err)
	}
	if changes.Load() == 0 {
		t.Error("OnChange not called")
	}
	// The schedule's key seals, not the ring's own (newer) first key.
	if got := sealedBy(t, r); got != a.Name {
		t.Fatalf("seals with %x, want the scheduled key", got)
	}
	if _, err := r.Open(ownTicket, LabelServer); err != nil {
		t.Fatalf("the demoted own key no longer opens: %v", err)
	}
	for _, k := range r.Keys() {
		if k.Name == own.Name && !k.SealUntil.Equal(t0) {
			t.Errorf("own key seals until %v", k.SealUntil)
		}
	}
	clock.Advance(time.Hour)
	bTicket := mustRingSeal(t, r, LabelServer)
	if [KeyNameSize]byte(bTicket[:16]) != b.Name {
		t.Fatal("b did not take over at its NotBefore")
	}
	// Past b's sealing time, with no newer key: keep sealing with b, and
	// keep opening its tickets, even long after.
	clock.Advance(10 * time.Hour)
	late := mustRingSeal(t, r, LabelServer)
	if [KeyNameSize]byte(late[:16]) != b.Name {
		t.Fatal("a managed ring rotated on its own")
	}
	if _, err := r.Open(late, LabelServer); err != nil {
		t.Fatalf("current key past its time: %v", err)
	}
	if _, err := r.Open(ownTicket, LabelServer); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("demoted own key after its time: %v", err)
	}
	if n := len(r.Keys()); n != 1 {
		t.Errorf("%d keys kept, want b only", n)
	}
	if unknown.Load() != 1 {
		t.Errorf("OnUnknownKey called %d times, want 1 (for a key the ring no longer holds)", unknown.Load())
	}
	st := r.Stats()
	if st.Sealed != 4 || st.Opened != 2 || st.UnknownKey != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := r.Open([]byte{1, 2, 3}, LabelServer); err == nil || r.Stats().Rejected != 1 {
		t.Errorf("malformed ticket: %v, %+v", err, r.Stats())
	}
}

// TestKeyRingInitialKeys: a ring made with saved keys goes on with them.
func TestKeyRingInitialKeys(t *testing.T) {
	old, clock := newTestRing(t, KeyRingConfig{Rotation: time.Hour, TicketLifetime: time.Hour})
	ticket := mustRingSeal(t, old, LabelServer)
	clock.Advance(30 * time.Minute)
	r, err := NewKeyRing(KeyRingConfig{Now: clock.Now, Rotation: time.Hour, TicketLifetime: time.Hour, Keys: old.Export()})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys()) != 1 || sealedBy(t, r) != old.Keys()[0].Name {
		t.Fatalf("keys %+v", r.Keys())
	}
	if _, err := r.Open(ticket, LabelServer); err != nil {
		t.Fatal(err)
	}
	// Saved keys past their time give a fresh ring.
	clock.Advance(3 * time.Hour)
	r, err = NewKeyRing(KeyRingConfig{Now: clock.Now, Rotation: time.Hour, TicketLifetime: time.Hour, Keys: old.Export()})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Keys(); len(k) != 1 || k[0].Name == old.Keys()[0].Name {
		t.Fatalf("stale keys kept: %+v", k)
	}
	bad := old.Export()
	bad[0].Name[0] ^= 1
	if _, err := NewKeyRing(KeyRingConfig{Keys: bad}); err == nil {
		t.Error("a key whose name does not match its secret accepted")
	}
}
