package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
)

// FuzzFlagParsers feeds the same text to every parser of the command
// line's flag values: none may panic, and each either fails with a usage
// error or returns something usable.
func FuzzFlagParsers(f *testing.F) {
	for _, s := range []string{
		"client1:00112233", "coaps://127.0.0.1:5684/time?x=1", "coaps://[::1]/a/b", "PSK-AES128-CCM8,TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
		"client_state,session_id", "application/cbor", "60", strings.Repeat("ab", 32), ":", "coaps://", "",
		"memory:1000000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, key, err := parsePSK(s); err == nil && (id == "" || len(key) == 0) {
			t.Fatalf("parsePSK(%q) = %q, %x", s, id, key)
		}
		if addr, path, err := parseCoapsURI(s); err == nil && (addr == "" || !strings.HasPrefix(path, "/")) {
			t.Fatalf("parseCoapsURI(%q) = %q, %q", s, addr, path)
		}
		_, _ = parseContentFormat(s)
		if k, err := parseStoreKey(s); err == nil && k != nil && len(k) != 32 {
			t.Fatalf("parseStoreKey(%q) gave %d bytes", s, len(k))
		}
		if cfg, ok, err := parseMemorySpec(s); err == nil && ok && cfg.Capacity != 0 &&
			(cfg.Capacity > maxMemoryCapacity || cfg.MaxBytes < cfg.Capacity) {
			t.Fatalf("parseMemorySpec(%q) = %+v", s, cfg)
		} else if err != nil && (!ok || !errors.As(err, new(usageError))) {
			t.Fatalf("parseMemorySpec(%q): %t, %v", s, ok, err)
		}
		if ids, err := dtls.ParseCipherSuites(s); err == nil && len(ids) == 0 {
			t.Fatalf("ParseCipherSuites(%q) empty", s)
		}
		if ts, err := negotiation.ParseList(s); err == nil {
			if err := negotiation.Policy(ts).Validate(); err != nil {
				t.Fatalf("ParseList(%q) = %v, invalid: %v", s, ts, err)
			}
		}
	})
}
