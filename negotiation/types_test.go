package negotiation

import (
	"reflect"
	"strings"
	"testing"
)

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{None, "none"},
		{SessionID, "session_id"},
		{SessionTicket, "session_ticket"},
		{ClientState, "client_state"},
		{4, "unknown(4)"},
		{42, "unknown(42)"},
		{255, "unknown(255)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("Type(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestTypeValues(t *testing.T) {
	// The wire values are fixed by the extension's wire format (see ClientOffer).
	if None != 0 || SessionID != 1 || SessionTicket != 2 || ClientState != 3 {
		t.Fatal("SessionResumptionType values changed")
	}
	if DefaultCodepoint != 0xFF42 || HandleSize != 16 {
		t.Fatal("DefaultCodepoint or HandleSize changed")
	}
}

func TestParseTypeAllValues(t *testing.T) {
	for v := 0; v < 256; v++ {
		typ := Type(v)
		got, err := ParseType(typ.String())
		if v <= 3 {
			if err != nil || got != typ {
				t.Errorf("ParseType(%q) = %v, %v; want %v", typ.String(), got, err, typ)
			}
		} else if err == nil {
			t.Errorf("ParseType(%q) accepted an unknown name", typ.String())
		}
	}
	for _, s := range []string{"", "None", "session-id", "sessionid", " none", "3"} {
		if _, err := ParseType(s); err == nil {
			t.Errorf("ParseType(%q) succeeded, want error", s)
		}
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		in      string
		want    []Type
		wantErr string // substring of the error; "" = success
	}{
		{in: "none", want: []Type{None}},
		{in: "session_id,client_state", want: []Type{SessionID, ClientState}},
		{in: "client_state,session_ticket,session_id,none", want: []Type{ClientState, SessionTicket, SessionID, None}},
		{in: " session_ticket , session_id ", want: []Type{SessionTicket, SessionID}},
		{in: "", wantErr: "item 1 is empty"},
		{in: "session_id,", wantErr: "item 2 is empty"},
		{in: ",session_id", wantErr: "item 1 is empty"},
		{in: "session_id,,none", wantErr: "item 2 is empty"},
		{in: "session_id, ", wantErr: "item 2 is empty"},
		{in: "session_id,tickets", wantErr: `item 2: unknown resumption type "tickets"`},
		{in: "Session_ID", wantErr: `item 1: unknown resumption type "Session_ID"`},
		{in: "session_id,none,session_id", wantErr: "item 3: duplicate session_id"},
		{in: "none,none", wantErr: "item 2: duplicate none"},
	}
	for _, tt := range tests {
		got, err := ParseList(tt.in)
		if tt.wantErr != "" {
			if err == nil {
				t.Errorf("ParseList(%q) = %v, want error containing %q", tt.in, got, tt.wantErr)
			} else if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseList(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if back := FormatList(got); back != strings.ReplaceAll(tt.in, " ", "") {
			t.Errorf("FormatList(ParseList(%q)) = %q", tt.in, back)
		}
	}
}

func TestFormatList(t *testing.T) {
	tests := []struct {
		in   []Type
		want string
	}{
		{nil, ""},
		{[]Type{None}, "none"},
		{[]Type{SessionTicket, ClientState}, "session_ticket,client_state"},
		{[]Type{SessionID, 9}, "session_id,unknown(9)"},
	}
	for _, tt := range tests {
		if got := FormatList(tt.in); got != tt.want {
			t.Errorf("FormatList(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
