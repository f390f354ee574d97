package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/wiresharktest"
)

// capturedGetResult is the part of `get --json` these tests read.
type capturedGetResult struct {
	Resumed    bool   `json:"resumed"`
	Resumption string `json:"resumption"`
}

// TestWiresharkDecryptsGetWithKeyLog: a capture of `dtlsresume get` against
// `dtlsresume serve`, with the key log the client wrote (--keylog), shows
// the CoAP request and response in tshark; without the key log it does not.
func TestWiresharkDecryptsGetWithKeyLog(t *testing.T) {
	port := peers.FreeUDPPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	capture := wiresharktest.StartCapture(t, port)
	startServeAt(t, addr)
	keylog := filepath.Join(t.TempDir(), "keys.log")
	out, err := exec.Command(binary, "get", "coaps://"+addr+"/time", "--psk", demoPSKArg, "--keylog", keylog).Output()
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	payload := strings.TrimSpace(string(out))
	file := capture.Stop()

	keys, err := os.ReadFile(keylog)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}\n$`).Match(keys) {
		t.Fatalf("key log %q: want one NSS CLIENT_RANDOM line", keys)
	}

	decodeAs := []string{"-d", "dtls.port==" + strconv.Itoa(port) + ",coap"}
	if p := wiresharktest.Read(t, file, append(decodeAs, "-Y", "coap")...); len(p) != 0 {
		t.Fatalf("without the key log tshark shows %d CoAP packets", len(p))
	}
	packets := wiresharktest.Read(t, file, append(decodeAs, "-o", "tls.keylog_file:"+keylog, "-Y", "coap")...)
	if len(packets) != 2 {
		t.Fatalf("with the key log tshark shows %d CoAP packets, want the request and the response", len(packets))
	}
	req, resp := packets[0], packets[1]
	if f, _ := req.Get("coap.code"); f.Show != "1" {
		t.Errorf("request: code %q (%s), want GET", f.Show, f.ShowName)
	}
	if got := req.Shows("coap.opt.uri_path"); !slices.Equal(got, []string{"time"}) {
		t.Errorf("request: Uri-Path %q, want [time]", got)
	}
	if f, _ := resp.Get("coap.code"); f.Show != "69" {
		t.Errorf("response: code %q (%s), want 2.05", f.Show, f.ShowName)
	}
	if f, _ := resp.Get("coap.payload"); f.Value != hex.EncodeToString([]byte(payload)) {
		t.Errorf("response: payload %q, want %x (%q, what get printed)", f.Value, payload, payload)
	}
	reqToken, _ := req.Get("coap.token")
	respToken, _ := resp.Get("coap.token")
	if reqToken.Value == "" || reqToken.Value != respToken.Value {
		t.Errorf("tokens %q and %q differ", reqToken.Value, respToken.Value)
	}
}

// TestWiresharkShowsResumptionExtension: with tools/wireshark/dtlsresume.lua
// loaded, tshark shows the session_resumption_type extension of real
// handshakes by name, for every resumption type, full and resumed: the
// offer, the handle and resume flag (client_state), the selected type and
// the client_state ticket the server returns, which must be the ticket the
// client handed over in its full handshake.
func TestWiresharkShowsResumptionExtension(t *testing.T) {
	port := peers.FreeUDPPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	capture := wiresharktest.StartCapture(t, port)
	startServeAt(t, addr)
	types := []string{"session_id", "session_ticket", "client_state"}
	dir := t.TempDir()
	for _, typ := range types {
		for run, wantResumed := range []bool{false, true} {
			args := []string{"get", "coaps://" + addr + "/time", "--psk", demoPSKArg, "--resumption", typ, "--json"}
			if typ != "client_state" { // client_state keeps nothing
				args = append(args, "--session", filepath.Join(dir, typ))
			}
			out, err := exec.Command(binary, args...).Output()
			if err != nil {
				t.Fatalf("get %s run %d: %v", typ, run, err)
			}
			var res capturedGetResult
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("get %s: %q: %v", typ, out, err)
			}
			if res.Resumed != wantResumed || res.Resumption != typ {
				t.Fatalf("get %s run %d: resumed=%v resumption=%s", typ, run, res.Resumed, res.Resumption)
			}
		}
	}
	file := capture.Stop()
	packets := wiresharktest.Read(t, file, wiresharktest.LoadDissector(t)...)

	// Each get is one client socket: split the capture by client port, in
	// the order the runs came.
	var clients []string
	byClient := map[string][]wiresharktest.Packet{}
	probe := strconv.Itoa(capture.ProbePort())
	for _, p := range packets {
		src, _ := p.Get("udp.srcport")
		dst, _ := p.Get("udp.dstport")
		client := src.Show
		if client == strconv.Itoa(port) {
			client = dst.Show
		}
		if client == probe {
			continue
		}
		if _, ok := byClient[client]; !ok {
			clients = append(clients, client)
		}
		byClient[client] = append(byClient[client], p)
	}
	if len(clients) != 2*len(types) {
		t.Fatalf("capture holds %d client conversations, want %d", len(clients), 2*len(types))
	}

	var csHandle string
	for i, typ := range types {
		full, resumed := byClient[clients[2*i]], byClient[clients[2*i+1]]
		t.Run(typ, func(t *testing.T) {
			for run, conv := range [][]wiresharktest.Packet{full, resumed} {
				what := fmt.Sprintf("%s run %d", typ, run)
				hellos, answers := 0, 0
				for _, p := range conv {
					if !p.Has("dtlsresume") {
						continue
					}
					switch msg, _ := p.Get("dtlsresume.message"); msg.Show {
					case "1":
						hellos++
						checkCapturedOffer(t, what, p, typ, &csHandle)
					case "2":
						answers++
						checkCapturedAnswer(t, what, p, typ, run == 1, full)
					default:
						t.Errorf("%s: frame %d: extension in handshake message %q", what, p.Number, msg.Show)
					}
				}
				// A full handshake repeats its ClientHello with the cookie; a
				// resumption usually skips the cookie exchange (a slow store
				// lookup may still cost one, docs/decisions.md 18).
				if minHellos := 2 - run; hellos < minHellos || hellos > 2 || answers != 1 {
					t.Errorf("%s: %d ClientHellos and %d ServerHellos show the extension, want %d-2 and 1", what, hellos, answers, minHellos)
				}
			}
		})
	}
}

// checkCapturedOffer checks a ClientHello's session_resumption_type as the
// dissector shows it: `--resumption typ` offers typ alone; a client_state
// client sends its handle, the same in every run, and always asks for its
// ticket back (resume 1, docs/decisions.md 23); other clients send neither.
func checkCapturedOffer(t *testing.T, what string, p wiresharktest.Packet, typ string, csHandle *string) {
	t.Helper()
	code := map[string]string{"session_id": "1", "session_ticket": "2", "client_state": "3"}[typ]
	offered := p.All("dtlsresume.offered")
	if len(offered) != 1 || offered[0].Show != code || offered[0].ShowName != "Offered type: "+typ+" ("+code+")" {
		t.Errorf("%s: frame %d: offered %+v, want %s alone", what, p.Number, offered, typ)
	}
	if got := p.Shows("dtlsresume.offered_names"); !slices.Equal(got, []string{typ}) {
		t.Errorf("%s: frame %d: offered names %q", what, p.Number, got)
	}
	handle, hasHandle := p.Get("dtlsresume.handle")
	resume, _ := p.Get("dtlsresume.resume")
	if typ != "client_state" {
		if hasHandle || resume.Show != "0" {
			t.Errorf("%s: frame %d: handle %q, resume %q; want none and 0", what, p.Number, handle.Value, resume.Show)
		}
		return
	}
	if len(handle.Value) != 32 {
		t.Errorf("%s: frame %d: handle %q, want 16 bytes", what, p.Number, handle.Value)
	}
	if *csHandle == "" {
		*csHandle = handle.Value
	} else if handle.Value != *csHandle {
		t.Errorf("%s: frame %d: handle %s, earlier %s", what, p.Number, handle.Value, *csHandle)
	}
	if resume.Show != "1" || !strings.HasPrefix(resume.ShowName, "Resume client state: yes") {
		t.Errorf("%s: frame %d: resume %q", what, p.Number, resume.ShowName)
	}
}

// checkCapturedAnswer checks a ServerHello's session_resumption_type: the server
// selects typ; only a client_state resumption carries a ticket, the one the
// client sent in its NewSessionTicket (in the clear, before its
// ChangeCipherSpec) during the full handshake full.
func checkCapturedAnswer(t *testing.T, what string, p wiresharktest.Packet, typ string, resumed bool, full []wiresharktest.Packet) {
	t.Helper()
	code := map[string]string{"session_id": "1", "session_ticket": "2", "client_state": "3"}[typ]
	if sel, _ := p.Get("dtlsresume.selected"); sel.Show != code || sel.ShowName != "Selected type: "+typ+" ("+code+")" {
		t.Errorf("%s: frame %d: selected %q, want %s", what, p.Number, sel.ShowName, typ)
	}
	ticket, hasTicket := p.Get("dtlsresume.ticket")
	if typ != "client_state" || !resumed {
		if length, _ := p.Get("dtlsresume.ticket_length"); hasTicket || length.Show != "0" {
			t.Errorf("%s: frame %d: a ticket of %s bytes", what, p.Number, length.Show)
		}
		return
	}
	var handedOver []string
	for _, q := range full {
		for _, f := range q.All("dtls.handshake.session_ticket") {
			handedOver = append(handedOver, f.Value)
		}
	}
	if !hasTicket || len(handedOver) != 1 || ticket.Value != handedOver[0] {
		t.Errorf("%s: frame %d: returned ticket %q, want the one handed over in the full handshake %q", what, p.Number, ticket.Value, handedOver)
	}
	if length, _ := p.Get("dtlsresume.ticket_length"); length.Show != strconv.Itoa(len(ticket.Value)/2) {
		t.Errorf("%s: frame %d: ticket_length %s for %d bytes", what, p.Number, length.Show, len(ticket.Value)/2)
	}
}
