package negotiation_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// One negotiation on the wire: the client's offer in its ClientHello, the
// server's selection in its ServerHello, and the client's check of it.
func Example() {
	// The client offers client_state first, then session_ticket. A
	// client_state offer carries the client's 16-byte handle (dtls derives it
	// from the client's key) and asks for a fresh session (Resume false).
	handle := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	offer := &negotiation.ClientOffer{
		Offered: []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket},
		Handle:  handle,
	}
	hello, err := offer.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	// offered<1..255> = 03 02, client_state_handle<0..255> = 16 bytes,
	// resume_client_state = 0 (see ClientOffer):
	fmt.Printf("ClientHello extension_data: %x\n", hello)

	// A server that keeps nothing per client allows only tickets.
	received, err := negotiation.ParseClientOffer(hello)
	if err != nil {
		log.Fatal(err) // wraps ErrDecode: answer decode_error
	}
	policy := negotiation.Policy{negotiation.SessionTicket}
	answer := &negotiation.ServerAnswer{Selected: negotiation.Select(received.Offered, policy)}
	serverHello, err := answer.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	// selected = 02, client_state_ticket<0..2^16-1> empty (see ServerAnswer):
	fmt.Printf("ServerHello extension_data: %x\n", serverHello)

	// The client accepts only what it offered.
	got, err := negotiation.ParseServerAnswer(serverHello)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("selected:", got.Selected, negotiation.CheckSelection(offer.Offered, got.Selected))
	// Output:
	// ClientHello extension_data: 02030210000102030405060708090a0b0c0d0e0f00
	// ServerHello extension_data: 020000
	// selected: session_ticket <nil>
}

// The server takes the first type in the client's order that its policy
// allows, and none when nothing fits.
func ExampleSelect() {
	offered, err := negotiation.ParseList("client_state,session_ticket,session_id")
	if err != nil {
		log.Fatal(err)
	}
	for _, policy := range []negotiation.Policy{
		{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState}, // the server's order does not matter
		{negotiation.SessionTicket}, // keeps nothing per client
		{negotiation.SessionID},     // no ticket keys
		{},                          // full handshakes only
	} {
		fmt.Printf("server allows [%s]: %s\n", negotiation.FormatList(policy), negotiation.Select(offered, policy))
	}
	// Output:
	// server allows [session_id,session_ticket,client_state]: client_state
	// server allows [session_ticket]: session_ticket
	// server allows [session_id]: session_id
	// server allows []: none
}

// Malformed extension data is refused with an error that names the struct
// and field at fault and wraps ErrDecode.
func ExampleParseClientOffer() {
	_, err := negotiation.ParseClientOffer([]byte{2, 1, 1, 0, 0}) // session_id twice
	fmt.Println(err)
	fmt.Println(errors.Is(err, negotiation.ErrDecode))
	// Output:
	// negotiation: ClientResumptionTypes: offered: duplicate session_id
	// true
}
