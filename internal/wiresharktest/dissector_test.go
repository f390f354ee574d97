package wiresharktest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

var (
	clientAddr = netip.MustParseAddrPort("127.0.0.1:40000")
	serverAddr = netip.MustParseAddrPort("127.0.0.1:5684")
	handle     = bytes.Repeat([]byte{0xa5}, negotiation.HandleSize)
)

// extension is one hello extension: type and extension_data.
type extension struct {
	typ  uint16
	data []byte
}

// helloRecord is a DTLS 1.2 record (epoch 0) holding one unfragmented
// ClientHello (msgType 1) or ServerHello (2) with a PSK suite and exts.
func helloRecord(msgType byte, exts ...extension) []byte {
	var body []byte
	body = append(body, 0xfe, 0xfd)                     // DTLS 1.2
	body = append(body, bytes.Repeat([]byte{7}, 32)...) // random
	body = append(body, 0)                              // session_id
	if msgType == 1 {
		body = append(body, 0)                // cookie
		body = append(body, 0, 2, 0xc0, 0xa8) // cipher_suites
		body = append(body, 1, 0)             // compression_methods
	} else {
		body = append(body, 0xc0, 0xa8, 0) // cipher_suite, compression_method
	}
	var ext []byte
	for _, e := range exts {
		ext = binary.BigEndian.AppendUint16(ext, e.typ)
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(e.data)))
		ext = append(ext, e.data...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)

	n := len(body)
	hs := []byte{msgType, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	hs = append(hs, body...)
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}

func marshal(t *testing.T, m interface{ Marshal() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readHellos writes one datagram per hello (ClientHellos from the client,
// ServerHellos from the server), dissects them with the dissector and
// options, and returns the packets in order.
func readHellos(t *testing.T, hellos [][]byte, options ...string) []Packet {
	t.Helper()
	var ds []Datagram
	for _, h := range hellos {
		d := Datagram{Src: clientAddr, Dst: serverAddr, Payload: h}
		if h[13] == 2 {
			d.Src, d.Dst = serverAddr, clientAddr
		}
		ds = append(ds, d)
	}
	file := filepath.Join(t.TempDir(), "hellos.pcap")
	if err := WritePcap(file, ds); err != nil {
		t.Fatal(err)
	}
	args := append(LoadDissector(t), "-d", "udp.port==5684,dtls")
	packets := Read(t, file, append(args, options...)...)
	if len(packets) != len(hellos) {
		t.Fatalf("tshark dissected %d packets, want %d", len(packets), len(hellos))
	}
	return packets
}

// experts returns the dissector's complaints about a packet.
func experts(p Packet) []string {
	var out []string
	for _, f := range p.All("dtlsresume.malformed") {
		out = append(out, f.ShowName)
	}
	return out
}

// TestDissectorShowsFieldsByName: every field of both structs, with the
// types by name, on hellos package negotiation encodes.
func TestDissectorShowsFieldsByName(t *testing.T) {
	cp := negotiation.DefaultCodepoint
	all := &negotiation.ClientOffer{
		Offered: []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket, negotiation.SessionID, negotiation.None},
		Handle:  handle,
		Resume:  true,
	}
	onlyID := &negotiation.ClientOffer{Offered: []negotiation.Type{negotiation.SessionID}}
	ticket := []byte{9, 8, 7, 6, 5}
	withTicket := &negotiation.ServerAnswer{Selected: negotiation.ClientState, Ticket: ticket}
	tickets := &negotiation.ServerAnswer{Selected: negotiation.SessionTicket}
	packets := readHellos(t, [][]byte{
		helloRecord(1, extension{23, nil}, extension{cp, marshal(t, all)}),
		helloRecord(1, extension{cp, marshal(t, onlyID)}, extension{23, nil}),
		helloRecord(2, extension{cp, marshal(t, withTicket)}),
		helloRecord(2, extension{0xff01, []byte{0}}, extension{cp, marshal(t, tickets)}),
		helloRecord(1, extension{23, nil}), // no extension: nothing to show
	})
	for _, p := range packets {
		if e := experts(p); len(e) != 0 {
			t.Errorf("frame %d: unexpected complaints %q", p.Number, e)
		}
	}

	p := packets[0]
	if got := p.Shows("dtlsresume.message"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("ClientHello: message %q", got)
	}
	wantNames := []string{"Offered type: client_state (3)", "Offered type: session_ticket (2)",
		"Offered type: session_id (1)", "Offered type: none (0)"}
	var names []string
	for _, f := range p.All("dtlsresume.offered") {
		names = append(names, f.ShowName)
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("offered %q, want %q", names, wantNames)
	}
	if got := p.Shows("dtlsresume.offered_names"); !slices.Equal(got, []string{"client_state,session_ticket,session_id,none"}) {
		t.Errorf("offered_names %q", got)
	}
	if f, _ := p.Get("dtlsresume.handle"); f.Value != hex.EncodeToString(handle) {
		t.Errorf("handle %q, want %x", f.Value, handle)
	}
	if f, _ := p.Get("dtlsresume.handle_length"); f.Show != "16" {
		t.Errorf("handle_length %q", f.Show)
	}
	if f, _ := p.Get("dtlsresume.resume"); f.Show != "1" || !strings.Contains(f.ShowName, "yes") {
		t.Errorf("resume %+v", f)
	}
	if f, _ := p.Get("dtlsresume"); !strings.Contains(f.ShowName, "ClientHello") ||
		!strings.Contains(f.ShowName, "offered client_state,session_ticket,session_id,none") {
		t.Errorf("summary %q", f.ShowName)
	}

	p = packets[1]
	if got := p.Shows("dtlsresume.offered"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("session_id offer: offered %q", got)
	}
	if p.Has("dtlsresume.handle") {
		t.Errorf("session_id offer: a handle is shown")
	}
	if f, _ := p.Get("dtlsresume.resume"); f.Show != "0" {
		t.Errorf("session_id offer: resume %q", f.Show)
	}

	p = packets[2]
	if f, _ := p.Get("dtlsresume.selected"); f.ShowName != "Selected type: client_state (3)" {
		t.Errorf("ServerHello: selected %q", f.ShowName)
	}
	if f, _ := p.Get("dtlsresume.ticket"); f.Value != hex.EncodeToString(ticket) {
		t.Errorf("ServerHello: ticket %q, want %x", f.Value, ticket)
	}
	if got := p.Shows("dtlsresume.message"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("ServerHello: message %q", got)
	}

	p = packets[3]
	if f, _ := p.Get("dtlsresume.selected"); f.ShowName != "Selected type: session_ticket (2)" {
		t.Errorf("ServerHello: selected %q", f.ShowName)
	}
	if f, _ := p.Get("dtlsresume.ticket_length"); f.Show != "0" || p.Has("dtlsresume.ticket") {
		t.Errorf("ServerHello without a ticket: ticket_length %q, ticket shown %v", f.Show, p.Has("dtlsresume.ticket"))
	}

	if packets[4].Has("dtlsresume") {
		t.Errorf("a hello without the extension shows it")
	}
}

// TestDissectorAgreesWithCodec: the dissector flags exactly the payloads
// package negotiation rejects, and among its complaints is the codec's own
// message (without "negotiation: ").
func TestDissectorAgreesWithCodec(t *testing.T) {
	h := string(handle)
	clientCases := []string{
		"\x01\x00\x00\x00",                     // none
		"\x02\x02\x01\x00\x00",                 // session_ticket, session_id
		"\x01\x03\x10" + h + "\x00",            // client_state, fresh
		"\x04\xc8\x01\x04\xff\x00\x00",         // unknown values are fine
		"",                                     // offered: truncated
		"\x03\x01\x02",                         // offered: truncated
		"\x00\x00\x00",                         // offered: empty list
		"\x02\x01\x01\x00\x00",                 // duplicate
		"\x01\x03\x05\x01\x02\x03\x04\x05\x00", // handle of 5 bytes
		"\x01\x01\x10" + h + "\x00",            // handle without client_state
		"\x01\x03\x00\x00",                     // client_state without handle
		"\x01\x03\x10" + h + "\x02",            // resume 2
		"\x01\x01\x00\x01",                     // resume without client_state
		"\x01\x03\x10" + h + "\x01\xff",        // trailing byte
		"\x01\x03\x10" + h[:8],                 // handle truncated
		"\x01\x03\x10" + h,                     // resume truncated
	}
	serverCases := []string{
		"\x00\x00\x00",         // none
		"\x03\x00\x02\xaa\xbb", // client_state with a ticket
		"",                     // selected: truncated
		"\x03",                 // ticket truncated
		"\x03\x00\x05\x01",     // ticket truncated
		"\x07\x00\x00",         // unknown selected
		"\x01\x00\x01\xaa",     // ticket with session_id
		"\x02\x00\x00\x00",     // trailing byte
	}
	var hellos [][]byte
	var want []string // the codec's error, "" for none
	for _, c := range clientCases {
		hellos = append(hellos, helloRecord(1, extension{negotiation.DefaultCodepoint, []byte(c)}))
		_, err := negotiation.ParseClientOffer([]byte(c))
		want = append(want, errText(err))
	}
	for _, c := range serverCases {
		hellos = append(hellos, helloRecord(2, extension{negotiation.DefaultCodepoint, []byte(c)}))
		_, err := negotiation.ParseServerAnswer([]byte(c))
		want = append(want, errText(err))
	}
	for i, p := range readHellos(t, hellos) {
		got := experts(p)
		if !p.Has("dtlsresume") {
			t.Errorf("case %d: extension not dissected", i)
			continue
		}
		switch {
		case want[i] == "" && len(got) != 0:
			t.Errorf("case %d: codec accepts, dissector complains %q", i, got)
		case want[i] != "" && !slices.Contains(got, want[i]):
			t.Errorf("case %d: codec says %q, dissector %q", i, want[i], got)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimPrefix(err.Error(), "negotiation: ")
}

// TestDissectorCodepointPreference: another codepoint is decoded only once
// the dtlsresume.codepoint preference names it, and then the default one
// is not.
func TestDissectorCodepointPreference(t *testing.T) {
	offer := marshal(t, &negotiation.ClientOffer{Offered: []negotiation.Type{negotiation.SessionTicket}})
	hellos := [][]byte{
		helloRecord(1, extension{0xff43, offer}),
		helloRecord(1, extension{negotiation.DefaultCodepoint, offer}),
	}
	packets := readHellos(t, hellos)
	if packets[0].Has("dtlsresume") || !packets[1].Has("dtlsresume") {
		t.Errorf("default codepoint: decoded %v, %v; want false, true", packets[0].Has("dtlsresume"), packets[1].Has("dtlsresume"))
	}
	packets = readHellos(t, hellos, "-o", "dtlsresume.codepoint:65347")
	if !packets[0].Has("dtlsresume") || packets[1].Has("dtlsresume") {
		t.Errorf("codepoint 65347: decoded %v, %v; want true, false", packets[0].Has("dtlsresume"), packets[1].Has("dtlsresume"))
	}
	if got := packets[0].Shows("dtlsresume.offered_names"); !slices.Equal(got, []string{"session_ticket"}) {
		t.Errorf("codepoint 65347: offered %q", got)
	}
}
