package ticketfmt

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var testSecret = unhex("000102030405060708090a0b0c0d0e0f")

func mustKey(t testing.TB, secret []byte) *Key {
	t.Helper()
	k, err := NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKey(t *testing.T) {
	k := mustKey(t, testSecret)
	nameKey, err := hkdf.Key(sha256.New, testSecret, nil, "ticketfmt key name key v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, nameKey)
	mac.Write([]byte("key name"))
	if want := mac.Sum(nil)[:16]; !bytes.Equal(k.Name[:], want) {
		t.Errorf("Name = %x, want HMAC-SHA256(name key, \"key name\")[0:16] = %x", k.Name, want)
	}
	// The secret itself keys neither the name nor (checked by the vectors)
	// the AEAD.
	direct := hmac.New(sha256.New, testSecret)
	direct.Write([]byte("key name"))
	if bytes.Equal(k.Name[:], direct.Sum(nil)[:16]) {
		t.Error("the key name is an HMAC under the AEAD's secret")
	}
	other := mustKey(t, bytes.Repeat([]byte{1}, 16))
	if other.Name == k.Name {
		t.Error("two keys share a name")
	}
	for _, n := range []int{0, 15, 17, 24, 32} {
		secret := bytes.Repeat([]byte{0xa5}, n)
		k, err := NewKey(secret)
		if err == nil {
			t.Errorf("NewKey accepted %d bytes: %v", n, k)
			continue
		}
		if n > 0 && strings.Contains(strings.ToLower(err.Error()), "a5a5") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
	// The caller's buffer may be reused.
	buf := bytes.Clone(testSecret)
	k2 := mustKey(t, buf)
	clear(buf)
	ticket, err := k2.Seal([]byte("state"), LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(ticket, LabelServer); err != nil {
		t.Errorf("key changed when its secret buffer was cleared: %v", err)
	}
}

func TestKeyDoesNotPrintSecret(t *testing.T) {
	secretHex := hex.EncodeToString(testSecret)
	k := mustKey(t, testSecret)
	ek := ExportedKey{KeyInfo: KeyInfo{Name: k.Name}, Secret: [16]byte(testSecret)}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{k, ek, &ek, []ExportedKey{ek}} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, secretHex) || strings.Contains(out, "[0 1 2 3 4 5 6 7 8 9 10") {
				t.Errorf("fmt %s of %T shows the secret: %s", format, v, out)
			}
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t, testSecret)
	for name, st := range testStates() {
		t.Run(name, func(t *testing.T) {
			plain := mustMarshal(t, st)
			if len(plain) > MaxStateSize {
				if _, err := k.Seal(plain, LabelServer); err == nil {
					t.Fatalf("Seal accepted a %d-byte state", len(plain))
				}
				return
			}
			for _, label := range []string{LabelServer, LabelClient} {
				ticket, err := k.Seal(plain, label)
				if err != nil {
					t.Fatal(err)
				}
				if len(ticket) != len(plain)+Overhead {
					t.Errorf("ticket is %d bytes, want %d+%d", len(ticket), len(plain), Overhead)
				}
				if !bytes.Equal(ticket[:KeyNameSize], k.Name[:]) {
					t.Error("ticket does not start with the key name")
				}
				got, err := k.Open(ticket, label)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatal("Open returned other bytes than were sealed")
				}
				if bytes.Contains(ticket, st.MasterSecret[:16]) {
					t.Error("ticket shows the master secret")
				}
			}
		})
	}
}

func TestSealFreshNonces(t *testing.T) {
	k := mustKey(t, testSecret)
	seen := map[string]bool{}
	for range 1000 {
		ticket, err := k.Seal([]byte("same state"), LabelServer)
		if err != nil {
			t.Fatal(err)
		}
		_, nonce, _, err := ParseTicket(ticket)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(nonce[:])] {
			t.Fatalf("nonce %x repeated", nonce)
		}
		seen[string(nonce[:])] = true
	}
}

func TestOpenFailures(t *testing.T) {
	k := mustKey(t, testSecret)
	other := mustKey(t, bytes.Repeat([]byte{7}, 16))
	plain := mustMarshal(t, testStates()["psk"])
	ticket, err := k.Seal(plain, LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(ticket) // other's name, k's sealing
	copy(forged, other.Name[:])
	tests := []struct {
		name   string
		key    *Key
		ticket []byte
		label  string
		want   error
	}{
		{"label mismatch", k, ticket, LabelClient, ErrAuth},
		{"label variant", k, ticket, LabelServer + " ", ErrAuth},
		{"other key", other, ticket, LabelServer, ErrUnknownKey},
		{"name swapped to other key", other, forged, LabelServer, ErrAuth},
		{"truncated", k, ticket[:len(ticket)-1], LabelServer, ErrMalformed},
		{"trailing byte", k, append(bytes.Clone(ticket), 0), LabelServer, ErrMalformed},
		{"empty", k, nil, LabelServer, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.ticket, tt.label)
			if err == nil {
				t.Fatalf("Open succeeded: %x", got)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := k.Open(ticket, ""); err == nil {
		t.Error("Open accepted an empty label")
	}
	if _, err := k.Seal(plain, ""); err == nil {
		t.Error("Seal accepted an empty label")
	}
}

func TestSealLimits(t *testing.T) {
	k := mustKey(t, testSecret)
	if _, err := k.Seal(make([]byte, MaxStateSize+1), LabelServer); err == nil {
		t.Error("Seal accepted a state that does not fit sealed_state")
	}
	ticket, err := k.Seal(make([]byte, MaxStateSize), LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if len(ticket) != KeyNameSize+NonceSize+2+0xffff {
		t.Errorf("largest ticket is %d bytes", len(ticket))
	}
	if _, err := k.Open(ticket, LabelServer); err != nil {
		t.Errorf("largest ticket does not open: %v", err)
	}
	k.seals.Store(maxSeals - 1)
	if _, err := k.Seal(nil, LabelServer); err != nil {
		t.Errorf("seal number 2^32 failed: %v", err)
	}
	if _, err := k.Seal(nil, LabelServer); err == nil {
		t.Error("key sealed more than 2^32 tickets")
	}
}

// checkTamperedFails opens every variant of ticket produced by mutate and
// fails the test if one opens or fails with an unexpected error.
func checkTamperedFails(t *testing.T, ticket []byte, open func([]byte) error) {
	t.Helper()
	try := func(what string, b []byte) {
		t.Helper()
		err := open(b)
		if err == nil {
			t.Fatalf("%s: tampered ticket opened", what)
		}
		if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
	}
	for i := range ticket {
		b := bytes.Clone(ticket)
		b[i] ^= 0xff
		try(fmt.Sprintf("byte %d", i), b)
	}
	for bit := range 32 * 8 {
		b := bytes.Clone(ticket)
		b[bit/8] ^= 1 << (bit % 8)
		try(fmt.Sprintf("bit %d", bit), b)
	}
}

func TestTamper(t *testing.T) {
	k := mustKey(t, testSecret)
	for _, name := range []string{"anonymous", "psk", "certificate_based", "raw_public_key"} {
		t.Run(name, func(t *testing.T) {
			ticket, err := k.Seal(mustMarshal(t, testStates()[name]), LabelClient)
			if err != nil {
				t.Fatal(err)
			}
			checkTamperedFails(t, ticket, func(b []byte) error {
				_, err := k.Open(b, LabelClient)
				return err
			})
		})
	}
}

func TestParseTicket(t *testing.T) {
	k := mustKey(t, testSecret)
	var nonce [NonceSize]byte
	copy(nonce[:], "nonce-123456")
	ticket, err := k.sealWithNonce([]byte("abc"), LabelServer, nonce)
	if err != nil {
		t.Fatal(err)
	}
	name, gotNonce, sealed, err := ParseTicket(ticket)
	if err != nil {
		t.Fatal(err)
	}
	if name != k.Name || gotNonce != nonce || len(sealed) != 3+TagSize {
		t.Errorf("ParseTicket = %x, %x, %d bytes", name, gotNonce, len(sealed))
	}
	sealed[0] ^= 1
	if _, err := k.Open(ticket, LabelServer); err != nil {
		t.Error("ParseTicket's sealed aliases the ticket")
	}

	for n := range len(ticket) {
		if _, _, _, err := ParseTicket(ticket[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseTicket of %d bytes: %v", n, err)
		}
	}
	shortTag := append(bytes.Clone(ticket[:KeyNameSize+NonceSize]), 0, TagSize-1)
	shortTag = append(shortTag, make([]byte, TagSize-1)...)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "ticketfmt: CcmTicket: key_name: truncated"},
		{"key name only", ticket[:16], "ticketfmt: CcmTicket: nonce: truncated"},
		{"no length", ticket[:28], "ticketfmt: CcmTicket: sealed_state: truncated"},
		{"short", ticket[:len(ticket)-1], "ticketfmt: CcmTicket: sealed_state: truncated"},
		{"sealed shorter than tag", shortTag, "ticketfmt: CcmTicket: sealed_state: 15 bytes, shorter than the 16-byte tag"},
		{"trailing", append(bytes.Clone(ticket), 9, 9), "ticketfmt: CcmTicket: 2 trailing bytes"},
	}
	for _, tt := range tests {
		_, _, _, err := ParseTicket(tt.in)
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want %q wrapping ErrMalformed", tt.name, err, tt.want)
		}
	}
}

// TestTicketSizes logs the sizes the report quotes and pins them.
func TestTicketSizes(t *testing.T) {
	k := mustKey(t, testSecret)
	for _, tc := range []struct {
		name string
		peer PeerIdentity
		want int
	}{
		{"anonymous", PeerIdentity{Type: Anonymous}, 121},
		{"psk 16-byte identity", PeerIdentity{Type: PSK, PSKIdentity: []byte("0123456789abcdef")}, 139},
		{"raw public key (Ed25519 SPKI)", PeerIdentity{Type: RawPublicKey, PublicKey: testSPKI}, 168},
	} {
		st := &State{Version: 0xfefd, CipherSuite: 0xc0a8, Peer: tc.peer, Timestamp: t0, SessionCreated: t0, Lifetime: 86400e9}
		plain := mustMarshal(t, st)
		ticket, err := k.Seal(plain, LabelServer)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s, no server_name: StatePlaintext %d bytes, CcmTicket %d bytes", tc.name, len(plain), len(ticket))
		if len(ticket) != tc.want {
			t.Errorf("%s: ticket %d bytes, want %d", tc.name, len(ticket), tc.want)
		}
	}
}

// BenchmarkSeal measures sealing a PSK state: Key seals marshalled bytes,
// KeyRing marshals the State too.
func BenchmarkSeal(b *testing.B) {
	st := testStates()["psk"]
	plain := mustMarshal(b, st)
	b.Run("Key", func(b *testing.B) {
		k := mustKey(b, testSecret)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Seal(plain, LabelServer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("KeyRing", func(b *testing.B) {
		r, err := NewKeyRing(KeyRingConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Seal(st, LabelServer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpen measures opening a PSK ticket: Key returns the plaintext,
// KeyRing also finds the key and parses the State.
func BenchmarkOpen(b *testing.B) {
	st := testStates()["psk"]
	b.Run("Key", func(b *testing.B) {
		k := mustKey(b, testSecret)
		ticket, err := k.Seal(mustMarshal(b, st), LabelServer)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Open(ticket, LabelServer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("KeyRing", func(b *testing.B) {
		r, err := NewKeyRing(KeyRingConfig{})
		if err != nil {
			b.Fatal(err)
		}
		ticket, err := r.Seal(st, LabelServer)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Rotate(); err != nil { // the ticket's key is the older one
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Open(ticket, LabelServer); err != nil {
				b.Fatal(err)
			}
		}
	})
}
