package dtls

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// updateFuzzSeeds rewrites the seed-* corpus files under testdata/fuzz from
// handshakeMessageSamples:
//
//	go test ./dtls/ -run TestFuzzSeedCorpusFiles -update-fuzz-seeds
var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the handshake message fuzz seed corpus files")

// messageFuzzTarget ties a fuzz target to the message type it parses.
type messageFuzzTarget struct {
	name   string
	newMsg func() handshakeMessage
}

var messageFuzzTargets = []messageFuzzTarget{
	{"FuzzParseClientHello", func() handshakeMessage { return new(clientHelloMsg) }},
	{"FuzzParseServerHello", func() handshakeMessage { return new(serverHelloMsg) }},
	{"FuzzParseHelloVerifyRequest", func() handshakeMessage { return new(helloVerifyRequestMsg) }},
	{"FuzzParseCertificate", func() handshakeMessage { return new(certificateMsg) }},
	{"FuzzParseServerKeyExchangeECDHE", func() handshakeMessage { return new(serverKeyExchangeECDHEMsg) }},
	{"FuzzParseServerKeyExchangePSK", func() handshakeMessage { return new(serverKeyExchangePSKMsg) }},
	{"FuzzParseCertificateRequest", func() handshakeMessage { return new(certificateRequestMsg) }},
	{"FuzzParseServerHelloDone", func() handshakeMessage { return new(serverHelloDoneMsg) }},
	{"FuzzParseClientKeyExchangePSK", func() handshakeMessage { return new(clientKeyExchangePSKMsg) }},
	{"FuzzParseClientKeyExchangeECDHE", func() handshakeMessage { return new(clientKeyExchangeECDHEMsg) }},
	{"FuzzParseCertificateVerify", func() handshakeMessage { return new(certificateVerifyMsg) }},
	{"FuzzParseFinished", func() handshakeMessage { return new(finishedMsg) }},
	{"FuzzParseNewSessionTicket", func() handshakeMessage { return new(newSessionTicketMsg) }},
	{"FuzzParseServerKeyExchangeECDHEPSK", func() handshakeMessage { return new(serverKeyExchangeECDHEPSKMsg) }},
	{"FuzzParseClientKeyExchangeECDHEPSK", func() handshakeMessage { return new(clientKeyExchangeECDHEPSKMsg) }},
	{"FuzzParseRawPublicKey", func() handshakeMessage { return new(rawPublicKeyMsg) }},
}

// hsFuzzSeed is one named seed input.
type hsFuzzSeed struct {
	name string
	data []byte
}

// messageFuzzSeeds returns seeds for the parser of newMsg's type: every
// valid sample of that type, one truncated sample and one with a trailing
// byte.
func messageFuzzSeeds(newMsg func() handshakeMessage) []hsFuzzSeed {
	want := reflect.TypeOf(newMsg())
	var seeds []hsFuzzSeed
	var first []byte
	for _, s := range handshakeMessageSamples() {
		if reflect.TypeOf(s.msg) != want {
			continue
		}
		data, err := s.msg.marshal()
		if err != nil {
			panic(fmt.Sprintf("sample %s: %v", s.name, err))
		}
		name := strings.ToLower(strings.ReplaceAll(s.name, "/", "-"))
		seeds = append(seeds, hsFuzzSeed{"seed-valid-" + name, data})
		if first == nil {
			first = data
		}
	}
	if len(first) > 0 {
		seeds = append(seeds, hsFuzzSeed{"seed-truncated", first[:len(first)-1]})
	}
	seeds = append(seeds, hsFuzzSeed{"seed-trailing", append(append([]byte(nil), first...), 0)})
	return seeds
}

// extensionPayloadFuzzSeeds returns seeds for FuzzParseHelloExtensionPayloads.
func extensionPayloadFuzzSeeds() []hsFuzzSeed {
	return []hsFuzzSeed{
		{"seed-supported-groups", marshalSupportedGroups([]uint16{29, 23, 24})},
		{"seed-ec-point-formats", marshalECPointFormats([]uint8{0, 1, 2})},
		{"seed-signature-algorithms", marshalSignatureAlgorithms([]uint16{0x0403, 0x0503, 0x0807})},
		{"seed-server-name", marshalServerName("coap.example")},
		{"seed-server-name-other-type", hsHex("0011 07 0003 616263 00 0001 78 fe 0004 64656667")},
		{"seed-renegotiation-info", marshalRenegotiationInfo(hsSeq(1, 12))},
		{"seed-certificate-types", marshalCertTypes([]uint8{certTypeRawPublicKey, certTypeX509})},
		{"seed-empty", nil},
	}
}

// fuzzHandshakeMessage checks that the parser of newMsg's type never panics,
// fails only with decode errors, and that whatever it accepts marshals back
// to the same bytes (every encoding here is canonical).
func fuzzHandshakeMessage(f *testing.F, newMsg func() handshakeMessage) {
	for _, s := range messageFuzzSeeds(newMsg) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMsg()
		if err := m.unmarshal(data); err != nil {
			if !errors.Is(err, errDecode) {
				t.Fatalf("error %v does not wrap errDecode", err)
			}
			return
		}
		out, err := m.marshal()
		if err != nil {
			t.Fatalf("parsed message does not marshal: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("marshal(unmarshal(x)) != x:\n got %x\nwant %x", out, data)
		}
		m2 := newMsg()
		if err := m2.unmarshal(out); err != nil {
			t.Fatalf("re-unmarshal: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-unmarshal differs: %#v != %#v", m, m2)
		}
	})
}

func FuzzParseClientHello(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[0].newMsg) }

func FuzzParseServerHello(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[1].newMsg) }

func FuzzParseHelloVerifyRequest(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[2].newMsg)
}

func FuzzParseCertificate(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[3].newMsg) }

func FuzzParseServerKeyExchangeECDHE(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[4].newMsg)
}

func FuzzParseServerKeyExchangePSK(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[5].newMsg)
}

func FuzzParseCertificateRequest(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[6].newMsg)
}

func FuzzParseServerHelloDone(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[7].newMsg) }

func FuzzParseClientKeyExchangePSK(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[8].newMsg)
}

func FuzzParseClientKeyExchangeECDHE(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[9].newMsg)
}

func FuzzParseCertificateVerify(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[10].newMsg)
}

func FuzzParseFinished(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[11].newMsg) }

func FuzzParseNewSessionTicket(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[12].newMsg)
}

func FuzzParseServerKeyExchangeECDHEPSK(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[13].newMsg)
}

func FuzzParseClientKeyExchangeECDHEPSK(f *testing.F) {
	fuzzHandshakeMessage(f, messageFuzzTargets[14].newMsg)
}

func FuzzParseRawPublicKey(f *testing.F) { fuzzHandshakeMessage(f, messageFuzzTargets[15].newMsg) }

// FuzzParseHelloExtensionPayloads runs every typed extension_data parser on
// the same input.
func FuzzParseHelloExtensionPayloads(f *testing.F) {
	for _, s := range extensionPayloadFuzzSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(name string, err error, remarshal func() []byte) {
			if err != nil {
				if !errors.Is(err, errDecode) {
					t.Fatalf("%s: error %v does not wrap errDecode", name, err)
				}
				return
			}
			if out := remarshal(); !bytes.Equal(out, data) {
				t.Fatalf("%s: re-marshal %x != input %x", name, out, data)
			}
		}
		groups, err := parseSupportedGroups(data)
		check("supported_groups", err, func() []byte { return marshalSupportedGroups(groups) })
		formats, err := parseECPointFormats(data)
		check("ec_point_formats", err, func() []byte { return marshalECPointFormats(formats) })
		algs, err := parseSignatureAlgorithms(data)
		check("signature_algorithms", err, func() []byte { return marshalSignatureAlgorithms(algs) })
		reneg, err := parseRenegotiationInfo(data)
		check("renegotiation_info", err, func() []byte { return marshalRenegotiationInfo(reneg) })
		cid, err := parseConnectionID(data)
		check("connection_id", err, func() []byte { return marshalConnectionID(cid) })
		types, err := parseCertTypes(data)
		check("certificate_type list", err, func() []byte { return marshalCertTypes(types) })
		typ, err := parseCertType(data)
		check("certificate_type", err, func() []byte { return []byte{typ} })

		// server_name skips other name types, so only the host survives.
		host, err := parseServerName(data)
		if err != nil {
			if !errors.Is(err, errDecode) {
				t.Fatalf("server_name: error %v does not wrap errDecode", err)
			}
			return
		}
		if host != "" {
			if again, err := parseServerName(marshalServerName(host)); err != nil || again != host {
				t.Fatalf("server_name: %q round-trips to %q, %v", host, again, err)
			}
		}
	})
}

// hsFuzzCorpusDir is where go test looks for a target's seed corpus.
func hsFuzzCorpusDir(target string) string {
	return filepath.Join("testdata", "fuzz", target)
}

// hsEncodeCorpusFile writes data in the go test fuzz v1 format.
func hsEncodeCorpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// hsDecodeCorpusFile reads a single-[]byte go test fuzz v1 file.
func hsDecodeCorpusFile(b []byte) ([]byte, error) {
	text, ok := strings.CutPrefix(string(b), "go test fuzz v1\n")
	if !ok {
		return nil, errors.New("missing go test fuzz v1 header")
	}
	text = strings.TrimSpace(text)
	lit, ok := strings.CutPrefix(text, "[]byte(")
	if !ok || !strings.HasSuffix(lit, ")") {
		return nil, fmt.Errorf("not a single []byte value: %q", text)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// TestFuzzSeedCorpusFiles checks that every fuzz target has at least two
// well-formed seed corpus files, and rewrites the seed-* files with
// -update-fuzz-seeds.
func TestFuzzSeedCorpusFiles(t *testing.T) {
	all := map[string][]hsFuzzSeed{"FuzzParseHelloExtensionPayloads": extensionPayloadFuzzSeeds()}
	for _, tgt := range messageFuzzTargets {
		all[tgt.name] = messageFuzzSeeds(tgt.newMsg)
	}
	for target, seeds := range all {
		dir := hsFuzzCorpusDir(target)
		if *updateFuzzSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, p := range old {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range seeds {
				if err := os.WriteFile(filepath.Join(dir, s.name), hsEncodeCorpusFile(s.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("%s: %v (run with -update-fuzz-seeds)", target, err)
			continue
		}
		if len(entries) < 2 {
			t.Errorf("%s: %d seed corpus files, want at least 2", target, len(entries))
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := hsDecodeCorpusFile(b); err != nil {
				t.Errorf("%s/%s: %v", target, e.Name(), err)
			}
		}
	}
}
