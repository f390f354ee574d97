package negotiation

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseClientOffer checks that ParseClientOffer never panics, fails only
// with ErrDecode, and that anything it accepts marshals back to the same bytes
// (the encoding is canonical) and re-parses to an equal value.
func FuzzParseClientOffer(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{2, 2, 1, 0, 0})
	f.Add(cat([]byte{4, 3, 2, 1, 0, 16}, testHandle, []byte{1}))
	f.Add([]byte{4, 200, 1, 4, 255, 0, 0})
	f.Add([]byte{3, 1, 2, 1, 0, 0})
	f.Add([]byte{1, 3, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseClientOffer(data)
		if err != nil {
			if o != nil || !errors.Is(err, ErrDecode) {
				t.Fatalf("ParseClientOffer(%x) = %+v, %v", data, o, err)
			}
			return
		}
		wire, err := o.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed %+v: %v", o, err)
		}
		if !bytes.Equal(wire, data) {
			t.Fatalf("Marshal(Parse(%x)) = %x", data, wire)
		}
		again, err := ParseClientOffer(wire)
		if err != nil {
			t.Fatalf("re-parse of %x: %v", wire, err)
		}
		if !reflect.DeepEqual(again, o) {
			t.Fatalf("re-parse = %+v, want %+v", again, o)
		}
	})
}

// FuzzParseServerAnswer is FuzzParseClientOffer for ServerResumptionType.
func FuzzParseServerAnswer(f *testing.F) {
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{3, 0, 3, 9, 8, 7})
	f.Add([]byte{1, 0, 1, 0xaa})
	f.Add([]byte{4, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseServerAnswer(data)
		if err != nil {
			if a != nil || !errors.Is(err, ErrDecode) {
				t.Fatalf("ParseServerAnswer(%x) = %+v, %v", data, a, err)
			}
			return
		}
		wire, err := a.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed %+v: %v", a, err)
		}
		if !bytes.Equal(wire, data) {
			t.Fatalf("Marshal(Parse(%x)) = %x", data, wire)
		}
		again, err := ParseServerAnswer(wire)
		if err != nil {
			t.Fatalf("re-parse of %x: %v", wire, err)
		}
		if !reflect.DeepEqual(again, a) {
			t.Fatalf("re-parse = %+v, want %+v", again, a)
		}
	})
}
