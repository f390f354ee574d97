package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

var fuzzStoreKey = bytes.Repeat([]byte{0x5a}, KeySize)

// fuzzLog returns the bytes of a real store file with a few records.
func fuzzLog(f *testing.F) []byte {
	f.Helper()
	path := filepath.Join(f.TempDir(), "log")
	s, err := NewFile(path, fuzzStoreKey, FileConfig{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for i, v := range []string{"first session", "second session", "third"} {
		if err := s.Put(ctx, []byte{byte(i)}, []byte(v), time.Hour); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.Delete(ctx, []byte{1}); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzFileLoad opens arbitrary store files: loading never panics, a file
// that opens serves Get without error other than ErrNotFound, and nothing
// that was not sealed under the key is ever loaded (checked by the
// records of the genuine log surviving only unchanged).
func FuzzFileLoad(f *testing.F) {
	good := fuzzLog(f)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(good[:fileHeaderSize])
	f.Add([]byte("not a store file"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := NewFile(path, fuzzStoreKey, FileConfig{NoSync: true})
		if err != nil {
			return
		}
		defer s.Close()
		for i := byte(0); i < 4; i++ {
			v, err := s.Get(context.Background(), []byte{i})
			if err != nil {
				continue
			}
			// Anything loaded must be a value the genuine log holds.
			if string(v) != "first session" && string(v) != "second session" && string(v) != "third" {
				t.Fatalf("record %d loaded as %q", i, v)
			}
		}
	})
}

// FuzzDecodeTicketKeys decodes stored ticket key lists: never panics, and
// a list that decodes encodes back to the same bytes.
func FuzzDecodeTicketKeys(f *testing.F) {
	ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeTicketKeys(ring.Export()))
	f.Add([]byte{storedKeyVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := decodeTicketKeys(data)
		if err != nil {
			return
		}
		if got := encodeTicketKeys(keys); !bytes.Equal(got, data) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// FuzzSealerOpen opens arbitrary sealed records: never panics, and only
// what seal made under the key and AAD opens.
func FuzzSealerOpen(f *testing.F) {
	s, err := newSealer(fuzzStoreKey)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := s.seal(nil, []byte("a session"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(sealed[:sealOverhead])
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := s.open(data, []byte("aad"))
		if err != nil {
			return
		}
		// Seeds are sealed again in every fuzzing process (random nonces),
		// so any genuine sealing may come back; a forgery would not open.
		if string(p) != "a session" {
			t.Fatalf("forged record opened: %q", p)
		}
	})
}
