package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
)

// FuzzFlagParsers feeds the same text to every parser of the command
// line's flag values: none may panic, and each either fails with a usage
// error or returns something usable.
func FuzzFlagParsers(f *testing.F) {
	for _, s := range []string{
		"client1:00112233", "coaps://127.0.0.1:5684/time?x=1", "coaps://[::1]/a/b", "PSK-AES128-CCM8,TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
		"client_state,session_id", "application/cbor", "60", strings.Repeat("ab", 32), ":", "coaps://", "",
		"memory:1000000", "redis://127.0.0.1:6379/0", "127.0.0.1:notaport", "h/0/1", "h?x=1", "pa/ss", "pa?ss", "pa#ss", "%zz",
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
		checkStoreSpecHidesPassword(t, s)
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

// Markers around a password: text that appears in no message of ours, so
// that an error containing either shows (part of) the password.
const pwOpen, pwClose = "Qz7PW", "WP7zQ"

// checkStoreSpecHidesPassword runs the --store parser (parseStoreSpec and
// storeSealing, whose errors openStore returns) on Redis URLs with a
// password built around s, or with s around a password: no error may
// contain any part of the password's markers.
func checkStoreSpecHidesPassword(t *testing.T, s string) {
	if strings.Contains(s, pwOpen) || strings.Contains(s, pwClose) ||
		strings.Contains(s, pwOpen[1:]) || strings.Contains(s, pwClose[:len(pwClose)-1]) {
		return
	}
	pw := pwOpen + "secret" + pwClose
	for _, spec := range []string{
		"redis://:" + pwOpen + s + pwClose + "@127.0.0.1:6379/0", // s is (in) the password
		"rediss://user:" + pwOpen + s + pwClose + "@h",
		"redis://:" + pw + "@" + s, // s is the rest of the URL
		"redis://user:" + pw + "@" + s,
		s + ":" + pw + "@h:1", // s is a scheme, or anything
		s + "//:" + pw + "@" + s,
		"redis://" + s + ":" + pw + "@h",
	} {
		msgs := []string{}
		sp, err := parseStoreSpec(spec)
		if err != nil {
			msgs = append(msgs, err.Error())
			if !errors.As(err, new(usageError)) {
				t.Fatalf("parseStoreSpec(%q): %v is not a usage error", spec, err)
			}
		} else if _, err := storeSealing(sp, nil, false); err != nil {
			msgs = append(msgs, err.Error())
		}
		msgs = append(msgs, store.RedactURL(spec))
		for _, m := range msgs {
			if strings.Contains(m, pwOpen) || strings.Contains(m, pwClose) {
				t.Fatalf("--store %q: %q shows the password", spec, m)
			}
		}
	}
}
