package ticketfmt

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// fuzzKey is the key FuzzOpen seals its seeds with.
var fuzzKey = [KeySize]byte{0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36}

func addStateSeeds(f *testing.F) {
	for _, name := range []string{"anonymous", "certificate_based", "psk", "raw_public_key", "zero_times", "extremes"} {
		f.Add(mustMarshal(f, testStates()[name]))
	}
}

// FuzzParseState: ParseState never panics, and what it accepts re-encodes to
// the same bytes (the encoding is canonical).
func FuzzParseState(f *testing.F) {
	addStateSeeds(f)
	f.Add([]byte{1})
	f.Add([]byte{2, 0xfe, 0xfd})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := st.Marshal()
		if err != nil {
			t.Fatalf("parsed state does not marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
		_ = st.Expired(st.Timestamp, 7*24*3600e9)
	})
}

// FuzzParseTicket: ParseTicket never panics, and what it accepts is exactly
// key_name || nonce || uint16 length || sealed.
func FuzzParseTicket(f *testing.F) {
	k, err := NewKey(fuzzKey[:])
	if err != nil {
		f.Fatal(err)
	}
	for _, label := range []string{LabelServer, LabelClient} {
		ticket, err := k.Seal(mustMarshal(f, testStates()["psk"]), label)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ticket)
	}
	f.Add(make([]byte, KeyNameSize+NonceSize+2))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, nonce, sealed, err := ParseTicket(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(sealed) < TagSize {
			t.Fatalf("accepted %d sealed bytes", len(sealed))
		}
		var re []byte
		re = append(re, name[:]...)
		re = append(re, nonce[:]...)
		re = append(re, byte(len(sealed)>>8), byte(len(sealed)))
		re = append(re, sealed...)
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, re)
		}
	})
}

// FuzzOpen: Key.Open and KeyRing.Open never panic and fail only with the
// sentinel errors; whatever opens must be a ticket the key itself produces
// for that nonce, and (for the ring) a valid state.
func FuzzOpen(f *testing.F) {
	k, err := NewKey(fuzzKey[:])
	if err != nil {
		f.Fatal(err)
	}
	ring, err := NewKeyRing(KeyRingConfig{Rand: bytes.NewReader(fuzzKey[:]), Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"anonymous", "psk", "raw_public_key"} {
		ticket, err := k.Seal(mustMarshal(f, testStates()[name]), LabelServer)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ticket, false)
		f.Add(ticket, true)
	}
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, client bool) {
		label := LabelServer
		if client {
			label = LabelClient
		}
		sentinel := func(err error) {
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		plain, err := k.Open(b, label)
		if err != nil {
			sentinel(err)
		} else {
			_, nonce, _, _ := ParseTicket(b)
			again, err := k.sealWithNonce(plain, label, nonce)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("opened ticket %x does not re-seal to itself: %x, %v", b, again, err)
			}
		}
		st, err := ring.Open(b, label)
		if err != nil {
			sentinel(err)
		} else if _, err := st.Marshal(); err != nil {
			t.Fatalf("ring opened an unencodable state: %v", err)
		}
	})
}
