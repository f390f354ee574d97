package negotiation

import (
	"errors"
	"strconv"

	"golang.org/x/crypto/cryptobyte"
)

// ErrDecode is wrapped by every error of ParseClientOffer and ParseServerAnswer:
// the payload is malformed and the handshake must end with a decode_error alert.
// The wrapping error names the struct and field at fault, e.g.
// "negotiation: ClientResumptionTypes: offered: duplicate session_id".
var ErrDecode = errors.New("negotiation: malformed session_resumption_type extension")

// Names of the wire structs, used in error messages.
const (
	clientStruct = "ClientResumptionTypes"
	serverStruct = "ServerResumptionType"
)

// fieldError is a rule violation in one field of one wire struct. Parse errors
// (decode == true) unwrap to ErrDecode; Marshal errors unwrap to nothing.
type fieldError struct {
	decode bool
	strct  string
	field  string
	msg    string
}

func (e *fieldError) Error() string {
	verb := ""
	if !e.decode {
		verb = "marshal "
	}
	return "negotiation: " + verb + e.strct + ": " + e.field + ": " + e.msg
}

func (e *fieldError) Unwrap() error {
	if e.decode {
		return ErrDecode
	}
	return nil
}

// ClientOffer is the extension_data of session_resumption_type in a
// ClientHello:
//
//	struct {
//	    SessionResumptionType offered<1..2^8-1>;   /* client preference order, no duplicates */
//	    opaque client_state_handle<0..2^8-1>;      /* 16 B when client_state offered, else empty */
//	    uint8  resume_client_state;                /* 1 = return my ticket and resume; 0 = fresh */
//	} ClientResumptionTypes;
//
// Rules (checked by both Marshal and ParseClientOffer): Offered holds 1..255
// entries without duplicates; values other than the four known ones are
// allowed (servers skip them). Handle is exactly HandleSize bytes if Offered
// contains ClientState and empty otherwise. Resume requires ClientState in
// Offered (and therefore a Handle).
type ClientOffer struct {
	Offered []Type // client preference order
	Handle  []byte // client_state_handle; nil when empty
	Resume  bool   // resume_client_state == 1
}

// ServerAnswer is the extension_data of session_resumption_type in a
// ServerHello:
//
//	struct {
//	    SessionResumptionType selected;
//	    opaque client_state_ticket<0..2^16-1>;     /* non-empty only when resuming client_state */
//	} ServerResumptionType;
//
// Rules (checked by both Marshal and ParseServerAnswer): Selected is one of the
// four known values; Ticket is empty unless Selected is ClientState, and at
// most 65535 bytes.
type ServerAnswer struct {
	Selected Type
	Ticket   []byte // client_state_ticket; nil when empty
}

// checkClient applies the ClientResumptionTypes rules to already-split fields.
func checkClient(decode bool, offered []Type, handle []byte, resume bool) error {
	fail := func(field, msg string) error {
		return &fieldError{decode: decode, strct: clientStruct, field: field, msg: msg}
	}
	if len(offered) == 0 {
		return fail("offered", "empty list")
	}
	if len(offered) > 255 {
		return fail("offered", strconv.Itoa(len(offered))+" entries, at most 255 allowed")
	}
	var seen [256]bool
	hasClientState := false
	for _, t := range offered {
		if seen[t] {
			return fail("offered", "duplicate "+t.String())
		}
		seen[t] = true
		if t == ClientState {
			hasClientState = true
		}
	}
	switch {
	case len(handle) != 0 && len(handle) != HandleSize:
		return fail("client_state_handle", "length "+strconv.Itoa(len(handle))+", want 0 or "+strconv.Itoa(HandleSize))
	case len(handle) != 0 && !hasClientState:
		return fail("client_state_handle", "present but client_state not offered")
	case len(handle) == 0 && hasClientState:
		return fail("client_state_handle", "empty but client_state offered")
	}
	if resume {
		if !hasClientState {
			return fail("resume_client_state", "1 but client_state not offered")
		}
		if len(handle) != HandleSize {
			return fail("resume_client_state", "1 without a "+strconv.Itoa(HandleSize)+"-byte client_state_handle")
		}
	}
	return nil
}

// checkServer applies the ServerResumptionType rules.
func checkServer(decode bool, selected Type, ticket []byte) error {
	fail := func(field, msg string) error {
		return &fieldError{decode: decode, strct: serverStruct, field: field, msg: msg}
	}
	if !selected.known() {
		return fail("selected", selected.String()+" is not a known type")
	}
	if len(ticket) > 0xFFFF {
		return fail("client_state_ticket", "length "+strconv.Itoa(len(ticket))+", at most 65535 allowed")
	}
	if len(ticket) != 0 && selected != ClientState {
		return fail("client_state_ticket", "present but selected is "+selected.String())
	}
	return nil
}

// Marshal encodes o as ClientResumptionTypes extension_data. It fails (without
// wrapping ErrDecode) when o breaks a rule that ParseClientOffer enforces, so
// whatever it returns parses back to an equal value.
func (o *ClientOffer) Marshal() ([]byte, error) {
	if o == nil {
		return nil, &fieldError{strct: clientStruct, field: "offered", msg: "nil ClientOffer"}
	}
	if err := checkClient(false, o.Offered, o.Handle, o.Resume); err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 1+len(o.Offered)+1+len(o.Handle)+1))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, t := range o.Offered {
			b.AddUint8(uint8(t))
		}
	})
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(o.Handle) })
	if o.Resume {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
	return b.Bytes()
}

// ParseClientOffer decodes ClientResumptionTypes extension_data. The result
// does not alias b. Every error wraps ErrDecode and names the field at fault.
// Unknown values in the offered list are kept (Select skips them).
func ParseClientOffer(b []byte) (*ClientOffer, error) {
	fail := func(field, msg string) error {
		return &fieldError{decode: true, strct: clientStruct, field: field, msg: msg}
	}
	s := cryptobyte.String(b)
	var offered, handle cryptobyte.String
	var resume uint8
	if !s.ReadUint8LengthPrefixed(&offered) {
		return nil, fail("offered", "truncated")
	}
	if !s.ReadUint8LengthPrefixed(&handle) {
		return nil, fail("client_state_handle", "truncated")
	}
	if !s.ReadUint8(&resume) {
		return nil, fail("resume_client_state", "truncated")
	}
	if !s.Empty() {
		return nil, fail("resume_client_state", "followed by "+strconv.Itoa(len(s))+" trailing bytes")
	}
	if resume > 1 {
		return nil, fail("resume_client_state", "value "+strconv.Itoa(int(resume))+", want 0 or 1")
	}
	o := &ClientOffer{Offered: make([]Type, len(offered)), Resume: resume == 1}
	for i, v := range offered {
		o.Offered[i] = Type(v)
	}
	if len(handle) != 0 {
		o.Handle = append([]byte(nil), handle...)
	}
	if err := checkClient(true, o.Offered, o.Handle, o.Resume); err != nil {
		return nil, err
	}
	return o, nil
}

// Marshal encodes a as ServerResumptionType extension_data. It fails (without
// wrapping ErrDecode) when a breaks a rule that ParseServerAnswer enforces.
func (a *ServerAnswer) Marshal() ([]byte, error) {
	if a == nil {
		return nil, &fieldError{strct: serverStruct, field: "selected", msg: "nil ServerAnswer"}
	}
	if err := checkServer(false, a.Selected, a.Ticket); err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 1+2+len(a.Ticket)))
	b.AddUint8(uint8(a.Selected))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a.Ticket) })
	return b.Bytes()
}

// ParseServerAnswer decodes ServerResumptionType extension_data. The result
// does not alias b. Every error wraps ErrDecode and names the field at fault.
// It does not check that Selected was offered: that is CheckSelection's job.
func ParseServerAnswer(b []byte) (*ServerAnswer, error) {
	fail := func(field, msg string) error {
		return &fieldError{decode: true, strct: serverStruct, field: field, msg: msg}
	}
	s := cryptobyte.String(b)
	var selected uint8
	var ticket cryptobyte.String
	if !s.ReadUint8(&selected) {
		return nil, fail("selected", "truncated")
	}
	if !s.ReadUint16LengthPrefixed(&ticket) {
		return nil, fail("client_state_ticket", "truncated")
	}
	if !s.Empty() {
		return nil, fail("client_state_ticket", "followed by "+strconv.Itoa(len(s))+" trailing bytes")
	}
	a := &ServerAnswer{Selected: Type(selected)}
	if len(ticket) != 0 {
		a.Ticket = append([]byte(nil), ticket...)
	}
	if err := checkServer(true, a.Selected, a.Ticket); err != nil {
		return nil, err
	}
	return a, nil
}
