package negotiation

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var testHandle = []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// cat concatenates byte slices, for writing wire vectors.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestClientOfferRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   ClientOffer
		wire []byte
	}{
		{"none only", ClientOffer{Offered: []Type{None}},
			[]byte{1, 0, 0, 0}},
		{"session_id", ClientOffer{Offered: []Type{SessionID}},
			[]byte{1, 1, 0, 0}},
		{"ticket then id", ClientOffer{Offered: []Type{SessionTicket, SessionID}},
			[]byte{2, 2, 1, 0, 0}},
		{"client_state fresh", ClientOffer{Offered: []Type{ClientState, SessionTicket}, Handle: testHandle},
			cat([]byte{2, 3, 2, 16}, testHandle, []byte{0})},
		{"client_state resume", ClientOffer{Offered: []Type{ClientState}, Handle: testHandle, Resume: true},
			cat([]byte{1, 3, 16}, testHandle, []byte{1})},
		{"all four", ClientOffer{Offered: []Type{ClientState, SessionTicket, SessionID, None}, Handle: testHandle, Resume: true},
			cat([]byte{4, 3, 2, 1, 0, 16}, testHandle, []byte{1})},
		{"unknown values kept", ClientOffer{Offered: []Type{200, SessionID, 4, 255}},
			[]byte{4, 200, 1, 4, 255, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(got, tt.wire) {
				t.Fatalf("Marshal = %x, want %x", got, tt.wire)
			}
			back, err := ParseClientOffer(tt.wire)
			if err != nil {
				t.Fatalf("ParseClientOffer: %v", err)
			}
			if !reflect.DeepEqual(*back, tt.in) {
				t.Fatalf("ParseClientOffer = %+v, want %+v", *back, tt.in)
			}
		})
	}
}

func TestClientOfferMaxLength(t *testing.T) {
	offered := make([]Type, 255)
	for i := range offered {
		offered[i] = Type(i + 1) // 1..255: includes client_state
	}
	in := ClientOffer{Offered: offered, Handle: testHandle}
	wire, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseClientOffer(wire)
	if err != nil || !reflect.DeepEqual(*back, in) {
		t.Fatalf("round trip of 255 offered: %v", err)
	}
	if _, err := (&ClientOffer{Offered: append(offered, None), Handle: testHandle}).Marshal(); err == nil {
		t.Fatal("Marshal accepted 256 offered types")
	}
}

func TestServerAnswerRoundTrip(t *testing.T) {
	longTicket := bytes.Repeat([]byte{0xab}, 0xFFFF)
	tests := []struct {
		name string
		in   ServerAnswer
		wire []byte
	}{
		{"none", ServerAnswer{Selected: None}, []byte{0, 0, 0}},
		{"session_id", ServerAnswer{Selected: SessionID}, []byte{1, 0, 0}},
		{"session_ticket", ServerAnswer{Selected: SessionTicket}, []byte{2, 0, 0}},
		{"client_state full handshake", ServerAnswer{Selected: ClientState}, []byte{3, 0, 0}},
		{"client_state resumed", ServerAnswer{Selected: ClientState, Ticket: []byte{9, 8, 7}}, []byte{3, 0, 3, 9, 8, 7}},
		{"max ticket", ServerAnswer{Selected: ClientState, Ticket: longTicket}, cat([]byte{3, 0xff, 0xff}, longTicket)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(got, tt.wire) {
				t.Fatalf("Marshal = %x, want %x", got, tt.wire)
			}
			back, err := ParseServerAnswer(tt.wire)
			if err != nil {
				t.Fatalf("ParseServerAnswer: %v", err)
			}
			if !reflect.DeepEqual(*back, tt.in) {
				t.Fatalf("ParseServerAnswer = %+v, want %+v", *back, tt.in)
			}
		})
	}
}

// checkDecodeErr asserts err wraps ErrDecode and its message contains every
// part in want (struct name, field, reason).
func checkDecodeErr(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %q", what, want)
		return
	}
	if !errors.Is(err, ErrDecode) {
		t.Errorf("%s: error %q does not wrap ErrDecode", what, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not contain %q", what, err, w)
		}
	}
}

func TestParseClientOfferMalformed(t *testing.T) {
	const st = "negotiation: ClientResumptionTypes: "
	tests := []struct {
		name string
		wire []byte
		want string
	}{
		{"nil", nil, st + "offered: truncated"},
		{"offered length beyond data", []byte{3, 1, 2}, st + "offered: truncated"},
		{"no handle length", []byte{1, 1}, st + "client_state_handle: truncated"},
		{"handle length beyond data", cat([]byte{1, 3, 16}, testHandle[:15]), st + "client_state_handle: truncated"},
		{"no resume flag", []byte{1, 1, 0}, st + "resume_client_state: truncated"},
		{"trailing byte", []byte{1, 1, 0, 0, 0}, st + "resume_client_state: followed by 1 trailing bytes"},
		{"trailing bytes", []byte{1, 1, 0, 0, 1, 2, 3}, st + "resume_client_state: followed by 3 trailing bytes"},
		{"empty offered", []byte{0, 0, 0}, st + "offered: empty list"},
		{"duplicate session_id", []byte{3, 1, 2, 1, 0, 0}, st + "offered: duplicate session_id"},
		{"duplicate none", []byte{2, 0, 0, 0, 0}, st + "offered: duplicate none"},
		{"duplicate unknown", []byte{3, 7, 1, 7, 0, 0}, st + "offered: duplicate unknown(7)"},
		{"handle 1 byte", []byte{1, 3, 1, 0xaa, 0}, st + "client_state_handle: length 1, want 0 or 16"},
		{"handle 15 bytes", cat([]byte{1, 3, 15}, testHandle[:15], []byte{0}), st + "client_state_handle: length 15"},
		{"handle 17 bytes", cat([]byte{1, 3, 17}, testHandle, []byte{0xee, 0}), st + "client_state_handle: length 17"},
		{"handle 32 bytes", cat([]byte{1, 3, 32}, testHandle, testHandle, []byte{0}), st + "client_state_handle: length 32"},
		{"handle without client_state", cat([]byte{2, 1, 2, 16}, testHandle, []byte{0}), st + "client_state_handle: present but client_state not offered"},
		{"client_state without handle", []byte{1, 3, 0, 0}, st + "client_state_handle: empty but client_state offered"},
		{"resume 2", cat([]byte{1, 3, 16}, testHandle, []byte{2}), st + "resume_client_state: value 2, want 0 or 1"},
		{"resume 255", []byte{1, 1, 0, 255}, st + "resume_client_state: value 255"},
		{"resume without client_state", []byte{1, 1, 0, 1}, st + "resume_client_state: 1 but client_state not offered"},
		{"resume without client_state, with handle", cat([]byte{1, 2, 16}, testHandle, []byte{1}), st + "client_state_handle: present but client_state not offered"},
		{"resume without handle", []byte{1, 3, 0, 1}, st + "client_state_handle: empty but client_state offered"},
	}
	for _, tt := range tests {
		o, err := ParseClientOffer(tt.wire)
		if o != nil {
			t.Errorf("%s: got %+v with error %v", tt.name, o, err)
		}
		checkDecodeErr(t, tt.name, err, tt.want)
	}
}

func TestParseServerAnswerMalformed(t *testing.T) {
	const st = "negotiation: ServerResumptionType: "
	tests := []struct {
		name string
		wire []byte
		want string
	}{
		{"nil", nil, st + "selected: truncated"},
		{"no ticket length", []byte{3}, st + "client_state_ticket: truncated"},
		{"half ticket length", []byte{3, 0}, st + "client_state_ticket: truncated"},
		{"ticket beyond data", []byte{3, 0, 4, 1, 2, 3}, st + "client_state_ticket: truncated"},
		{"trailing byte", []byte{1, 0, 0, 9}, st + "client_state_ticket: followed by 1 trailing bytes"},
		{"trailing after ticket", []byte{3, 0, 1, 5, 6, 7}, st + "client_state_ticket: followed by 2 trailing bytes"},
		{"selected unknown 4", []byte{4, 0, 0}, st + "selected: unknown(4) is not a known type"},
		{"selected unknown 255", []byte{255, 0, 0}, st + "selected: unknown(255)"},
		{"ticket with none", []byte{0, 0, 1, 0xaa}, st + "client_state_ticket: present but selected is none"},
		{"ticket with session_id", []byte{1, 0, 1, 0xaa}, st + "client_state_ticket: present but selected is session_id"},
		{"ticket with session_ticket", []byte{2, 0, 2, 0xaa, 0xbb}, st + "client_state_ticket: present but selected is session_ticket"},
	}
	for _, tt := range tests {
		a, err := ParseServerAnswer(tt.wire)
		if a != nil {
			t.Errorf("%s: got %+v with error %v", tt.name, a, err)
		}
		checkDecodeErr(t, tt.name, err, tt.want)
	}
}

// TestTruncations cuts every valid encoding at every length short of its end:
// each prefix must fail with ErrDecode naming a field as truncated.
func TestTruncations(t *testing.T) {
	offers := []ClientOffer{
		{Offered: []Type{None}},
		{Offered: []Type{SessionTicket, SessionID}},
		{Offered: []Type{ClientState, SessionTicket, SessionID, None}, Handle: testHandle, Resume: true},
		{Offered: []Type{9, ClientState}, Handle: testHandle},
	}
	for _, o := range offers {
		wire, err := o.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(wire); n++ {
			_, err := ParseClientOffer(wire[:n])
			checkDecodeErr(t, fmt.Sprintf("ClientOffer %s cut at %d", FormatList(o.Offered), n), err, "ClientResumptionTypes: ", ": truncated")
		}
	}
	answers := []ServerAnswer{
		{Selected: None},
		{Selected: SessionTicket},
		{Selected: ClientState, Ticket: bytes.Repeat([]byte{1}, 300)},
	}
	for _, a := range answers {
		wire, err := a.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(wire); n++ {
			_, err := ParseServerAnswer(wire[:n])
			checkDecodeErr(t, fmt.Sprintf("ServerAnswer %s cut at %d", a.Selected, n), err, "ServerResumptionType: ", ": truncated")
		}
	}
}

func TestMarshalRejectsInvalid(t *testing.T) {
	offers := []struct {
		name string
		in   *ClientOffer
		want string
	}{
		{"nil", nil, "nil ClientOffer"},
		{"empty offered", &ClientOffer{}, "offered: empty list"},
		{"duplicate", &ClientOffer{Offered: []Type{SessionTicket, SessionTicket}}, "offered: duplicate session_ticket"},
		{"short handle", &ClientOffer{Offered: []Type{ClientState}, Handle: testHandle[:8]}, "client_state_handle: length 8"},
		{"handle without client_state", &ClientOffer{Offered: []Type{SessionID}, Handle: testHandle}, "client_state_handle: present but client_state not offered"},
		{"client_state without handle", &ClientOffer{Offered: []Type{ClientState}}, "client_state_handle: empty but client_state offered"},
		{"resume without client_state", &ClientOffer{Offered: []Type{SessionID}, Resume: true}, "resume_client_state: 1 but client_state not offered"},
	}
	for _, tt := range offers {
		b, err := tt.in.Marshal()
		if err == nil {
			t.Errorf("%s: Marshal = %x, want error", tt.name, b)
			continue
		}
		if errors.Is(err, ErrDecode) {
			t.Errorf("%s: Marshal error %q wraps ErrDecode", tt.name, err)
		}
		if !strings.Contains(err.Error(), "negotiation: marshal ClientResumptionTypes: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Marshal error %q, want it to contain %q", tt.name, err, tt.want)
		}
	}
	answers := []struct {
		name string
		in   *ServerAnswer
		want string
	}{
		{"nil", nil, "nil ServerAnswer"},
		{"unknown selected", &ServerAnswer{Selected: 4}, "selected: unknown(4) is not a known type"},
		{"ticket with session_ticket", &ServerAnswer{Selected: SessionTicket, Ticket: []byte{1}}, "client_state_ticket: present but selected is session_ticket"},
		{"ticket too long", &ServerAnswer{Selected: ClientState, Ticket: make([]byte, 0x10000)}, "client_state_ticket: length 65536"},
	}
	for _, tt := range answers {
		b, err := tt.in.Marshal()
		if err == nil {
			t.Errorf("%s: Marshal = %x, want error", tt.name, b)
			continue
		}
		if errors.Is(err, ErrDecode) {
			t.Errorf("%s: Marshal error %q wraps ErrDecode", tt.name, err)
		}
		if !strings.Contains(err.Error(), "negotiation: marshal ServerResumptionType: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Marshal error %q, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

// TestParseDoesNotAlias checks that parsed values own their bytes, so the
// engine may reuse its receive buffer.
func TestParseDoesNotAlias(t *testing.T) {
	wire := cat([]byte{1, 3, 16}, testHandle, []byte{1})
	o, err := ParseClientOffer(wire)
	if err != nil {
		t.Fatal(err)
	}
	for i := range wire {
		wire[i] = 0xEE
	}
	if !bytes.Equal(o.Handle, testHandle) {
		t.Fatalf("Handle changed with the input buffer: %x", o.Handle)
	}
	wire = []byte{3, 0, 2, 0xaa, 0xbb}
	a, err := ParseServerAnswer(wire)
	if err != nil {
		t.Fatal(err)
	}
	wire[3], wire[4] = 0, 0
	if !bytes.Equal(a.Ticket, []byte{0xaa, 0xbb}) {
		t.Fatalf("Ticket changed with the input buffer: %x", a.Ticket)
	}
}
