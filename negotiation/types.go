package negotiation

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultCodepoint is the ExtensionType used for session_resumption_type
// unless configured otherwise: 0xFF42, from the private-use range 0xFF00–0xFFFF
// of RFC 8447. Both peers must use the same value.
const DefaultCodepoint uint16 = 0xFF42

// HandleSize is the length in bytes of client_state_handle, the static lookup
// key a client_state client sends so that the server can find its record.
const HandleSize = 16

// Type is a session resumption type.
//
//	enum {
//	    none(0), session_id(1), session_ticket(2), client_state(3), (255)
//	} SessionResumptionType;
type Type uint8

// The known resumption types. Other values may appear in a peer's offer and are
// ignored by Select.
const (
	None          Type = 0 // nobody keeps the session; every handshake is full
	SessionID     Type = 1 // RFC 5246 stateful resumption by session ID
	SessionTicket Type = 2 // RFC 5077: server state offloaded to the client
	ClientState   Type = 3 // client state offloaded to the server
)

var typeNames = [...]string{
	None:          "none",
	SessionID:     "session_id",
	SessionTicket: "session_ticket",
	ClientState:   "client_state",
}

// known reports whether t is one of the four defined values.
func (t Type) known() bool { return int(t) < len(typeNames) }

// String returns the spec name of t ("none", "session_id", "session_ticket",
// "client_state"), or "unknown(N)" for any other value.
func (t Type) String() string {
	if t.known() {
		return typeNames[t]
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// ParseType returns the Type whose String is s. Only the four spec names are
// accepted.
func ParseType(s string) (Type, error) {
	for i, name := range typeNames {
		if s == name {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("negotiation: unknown resumption type %q (want one of %s)", s, strings.Join(typeNames[:], ", "))
}

// ParseList parses a comma-separated, ordered list of type names such as
// "session_id,client_state", as taken by the --resumption flag. Spaces around
// names are ignored. Empty items (including an empty s), unknown names and
// duplicates are rejected with an error naming the offending item.
func ParseList(s string) ([]Type, error) {
	items := strings.Split(s, ",")
	out := make([]Type, 0, len(items))
	seen := make(map[Type]bool, len(items))
	for i, item := range items {
		name := strings.TrimSpace(item)
		if name == "" {
			return nil, fmt.Errorf("negotiation: resumption list %q: item %d is empty", s, i+1)
		}
		t, err := ParseType(name)
		if err != nil {
			return nil, fmt.Errorf("negotiation: resumption list %q: item %d: unknown resumption type %q (want one of %s)",
				s, i+1, name, strings.Join(typeNames[:], ", "))
		}
		if seen[t] {
			return nil, fmt.Errorf("negotiation: resumption list %q: item %d: duplicate %s", s, i+1, t)
		}
		seen[t] = true
		out = append(out, t)
	}
	return out, nil
}

// FormatList is the inverse of ParseList: the names of ts joined by commas
// ("" for an empty list). Unknown values are written as "unknown(N)", which
// ParseList rejects.
func FormatList(ts []Type) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, ",")
}
