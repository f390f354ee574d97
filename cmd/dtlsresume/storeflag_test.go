package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

const testStoreKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func TestOpenStoreMemory(t *testing.T) {
	for _, spec := range []string{"", "memory", "memory:1000000"} {
		s, ring, closeFn, err := openStore(spec, nil, nil)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		if _, ok := s.(*store.Memory); !ok || ring == nil {
			t.Errorf("%q: store %T, ring %v", spec, s, ring)
		}
		if err := closeFn(); err != nil {
			t.Error(err)
		}
	}
}

// TestOpenStoreMemoryCapacity: memory:CAPACITY bounds the store at
// CAPACITY records.
func TestOpenStoreMemoryCapacity(t *testing.T) {
	s, _, closeFn, err := openStore("memory:2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	for _, k := range []string{"sid/a", "sid/b", "sid/c"} {
		if err := s.Put(ctx, []byte(k), []byte("session"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.(*store.Memory).Stats(); st.Entries != 2 || st.Evictions != 1 {
		t.Errorf("memory:2 after three Puts: %+v", st)
	}
}

func TestParseMemorySpec(t *testing.T) {
	const def = store.DefaultMemoryMaxBytes
	for _, tc := range []struct {
		spec string
		ok   bool
		want store.MemoryConfig // with err == nil
		err  bool
	}{
		{"", true, store.MemoryConfig{}, false},
		{"memory", true, store.MemoryConfig{}, false},
		{"memory:1", true, store.MemoryConfig{Capacity: 1, MaxBytes: def}, false},
		{"memory:10000", true, store.MemoryConfig{Capacity: 10000, MaxBytes: def}, false},
		{"memory:1000000", true, store.MemoryConfig{Capacity: 1000000, MaxBytes: 512000000}, false},
		{"memory:007", true, store.MemoryConfig{Capacity: 7, MaxBytes: def}, false},
		{"memory:1000000000", true, store.MemoryConfig{Capacity: 1000000000, MaxBytes: 512000000000}, false},
		{"memory:", true, store.MemoryConfig{}, true},
		{"memory:0", true, store.MemoryConfig{}, true},
		{"memory:-1", true, store.MemoryConfig{}, true},
		{"memory:+5", true, store.MemoryConfig{}, true},
		{"memory: 5", true, store.MemoryConfig{}, true},
		{"memory:1e6", true, store.MemoryConfig{}, true},
		{"memory:1_000", true, store.MemoryConfig{}, true},
		{"memory:0x10", true, store.MemoryConfig{}, true},
		{"memory:lots", true, store.MemoryConfig{}, true},
		{"memory:1000000001", true, store.MemoryConfig{}, true},
		{"memory:99999999999999999999999", true, store.MemoryConfig{}, true},
		{"memory:5:5", true, store.MemoryConfig{}, true},
		{"memoryx", false, store.MemoryConfig{}, false},
		{"Memory:5", false, store.MemoryConfig{}, false},
		{"file:memory:5", false, store.MemoryConfig{}, false},
		{"redis://memory:5", false, store.MemoryConfig{}, false},
	} {
		cfg, ok, err := parseMemorySpec(tc.spec)
		if ok != tc.ok || (err != nil) != tc.err || err == nil && (cfg.Capacity != tc.want.Capacity || cfg.MaxBytes != tc.want.MaxBytes || cfg.Now != nil) {
			t.Errorf("parseMemorySpec(%q) = %+v, %t, %v; want %+v, %t, error %t", tc.spec, cfg, ok, err, tc.want, tc.ok, tc.err)
		}
		if err != nil && (!errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "memory:1000000")) {
			t.Errorf("parseMemorySpec(%q): %v: not a usage error with an example", tc.spec, err)
		}
	}
}

func TestOpenStoreErrors(t *testing.T) {
	t.Setenv(storeKeyEnv, "")
	dir := t.TempDir()
	for _, tc := range []struct {
		spec string
		key  []byte
		env  string
		want string
	}{
		{"file:" + filepath.Join(dir, "s"), nil, "", "needs an operator key"},
		{"file:", []byte(strings.Repeat("k", 32)), "", "empty path"},
		{"file:" + filepath.Join(dir, "s"), nil, "abcd", "64 hex digits"},
		{"file:" + filepath.Join(dir, "s"), []byte("short"), "", "want 32 bytes"},
		{"mysql://x", nil, "", "want memory[:CAPACITY], file:PATH or redis://"},
		{"memory:0", nil, "", "CAPACITY must be a number of records"},
		{"memory:1M", nil, "", "CAPACITY must be a number of records"},
		{"redis://host:notaport", nil, "", "--store"},
		{"redis://127.0.0.1:1", nil, "", "--store-insecure"},
		{"redis://:hunter2@127.0.0.1:1", nil, "", "give --store-key or $DTLSRESUME_STORE_KEY"},
		{"rediss://127.0.0.1:1/0", nil, "", "--store-insecure"},
	} {
		t.Setenv(storeKeyEnv, tc.env)
		_, _, _, err := openStore(tc.spec, tc.key, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("openStore(%q, %q, env %q) = %v, want an error with %q", tc.spec, tc.key, tc.env, err, tc.want)
		}
		if err != nil && !errors.As(err, new(usageError)) {
			t.Errorf("openStore(%q): %v is not a usage error", tc.spec, err)
		}
	}
	if k, err := parseStoreKey(testStoreKeyHex); err != nil || len(k) != 32 {
		t.Errorf("parseStoreKey: %x %v", k, err)
	}
	if k, err := parseStoreKey(""); err != nil || k != nil {
		t.Errorf("parseStoreKey empty: %x %v", k, err)
	}
	for spec, want := range map[string]string{"": "memory", "memory": "memory", "memory:1000000": "memory", "file:/x": "file", "redis://h:1": "redis", "rediss://h:1/2": "redis"} {
		if got := storeBackendName(spec); got != want {
			t.Errorf("storeBackendName(%q) = %q, want %q", spec, got, want)
		}
	}
}

func TestOpenStoreFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	key, _ := parseStoreKey(testStoreKeyHex)
	s, ring, closeFn, err := openStore("file:"+path, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, []byte("sid/x"), []byte("session"), time.Hour); err != nil {
		t.Fatal(err)
	}
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: time.Now(), Lifetime: time.Hour,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.Anonymous}}
	ticket, err := ring.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	// Restart, with the key from the environment this time.
	t.Setenv(storeKeyEnv, testStoreKeyHex)
	s, ring, closeFn, err = openStore("file:"+path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if v, err := s.Get(ctx, []byte("sid/x")); err != nil || string(v) != "session" {
		t.Errorf("after restart: %q %v", v, err)
	}
	if _, err := ring.Open(ticket, ticketfmt.LabelServer); err != nil {
		t.Errorf("ticket after restart: %v", err)
	}
}

func TestOpenStoreRedis(t *testing.T) {
	bin := peers.Require(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := peers.Start(t, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := p.WaitFor("Ready to accept connections", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	key, _ := parseStoreKey(testStoreKeyHex)
	s1, ring1, close1, err := openStore(url, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer close1()
	s2, ring2, close2, err := openStore(url, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	ctx := context.Background()
	if err := s1.Put(ctx, []byte("csh/h"), []byte("record"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := s2.Get(ctx, []byte("csh/h")); err != nil || string(v) != "record" {
		t.Errorf("second server: %q %v", v, err)
	}
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: time.Now(), Lifetime: time.Hour,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.Anonymous}}
	ticket, err := ring1.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring2.Open(ticket, ticketfmt.LabelServer); err != nil {
		t.Errorf("the second server cannot open the first one's ticket: %v", err)
	}
	// Nothing listens here: not an error, handshakes are just full.
	s3, _, close3, err := openStoreWith(fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)), nil, true, nil)
	if err != nil {
		t.Fatalf("unreachable redis: %v", err)
	}
	defer close3()
	if _, err := s3.Get(ctx, []byte("sid/x")); err == nil {
		t.Error("Get on an unreachable redis succeeded")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStoreSealing: for every backend, whether a store starts without a
// key, with one, and with --store-insecure, and what it logs.
func TestStoreSealing(t *testing.T) {
	key, _ := parseStoreKey(testStoreKeyHex)
	for _, tc := range []struct {
		spec     string
		key      []byte
		insecure bool
		sealed   bool
		err      string // "" for no error
	}{
		{"memory", nil, false, false, ""},
		{"memory:10", key, true, false, ""},
		{"file:/x", key, false, true, ""},
		{"file:/x", key, true, true, ""},
		{"file:/x", nil, false, false, "needs an operator key"},
		{"file:/x", nil, true, false, "--store-insecure does not apply"},
		{"redis://h:1", key, false, true, ""},
		{"redis://h:1", key, true, true, ""},
		{"redis://h:1", nil, true, false, ""},
		{"redis://:hunter2@h:1", nil, false, false, "--store-key or $DTLSRESUME_STORE_KEY (64 hex digits, the same on every server) to seal them, or --store-insecure"},
	} {
		sp, err := parseStoreSpec(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		sealed, err := storeSealing(sp, tc.key, tc.insecure)
		if sealed != tc.sealed || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("storeSealing(%q, key %t, insecure %t) = %t, %v; want %t, %q", tc.spec, tc.key != nil, tc.insecure, sealed, err, tc.sealed, tc.err)
		}
		if err != nil && (!errors.As(err, new(usageError)) || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("storeSealing(%q): %v: not a usage error, or it shows the password", tc.spec, err)
		}
		if err != nil {
			continue
		}
		var logs strings.Builder
		logStoreSealing(slog.New(slog.NewTextHandler(&logs, nil)), sp, sealed, tc.insecure)
		switch out := logs.String(); {
		case sp.backend == "memory":
			if out != "" {
				t.Errorf("%q logs %q", tc.spec, out)
			}
		case sealed:
			if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "sealed under the store key") ||
				strings.Contains(out, "--store-insecure ignored") != tc.insecure {
				t.Errorf("%q sealed, insecure %t, logs %q", tc.spec, tc.insecure, out)
			}
		default:
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "IN THE CLEAR (--store-insecure)") {
				t.Errorf("%q insecure logs %q", tc.spec, out)
			}
		}
	}
}

// TestStoreSpecErrorsHidePassword: no error of the --store parser shows
// the password of a Redis URL, however malformed the URL.
func TestStoreSpecErrorsHidePassword(t *testing.T) {
	for _, spec := range []string{
		"redis://:hunter2@127.0.0.1:notaport",
		"redis://:hun/ter2@127.0.0.1:6379",
		"redis://:hun?ter2@127.0.0.1",
		"redis://:hunter2@127.0.0.1/db",
		"redis:/:hunter2@127.0.0.1",
		"Redis://:hunter2@127.0.0.1",
		"redis//:hunter2@127.0.0.1",
		"mysql://root:hunter2@db",
	} {
		_, err := parseStoreSpec(spec)
		if err == nil {
			t.Errorf("%q accepted", spec)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun") || !errors.As(err, new(usageError)) {
			t.Errorf("%q: %v", spec, err)
		}
		_, _, _, err = openStoreWith(spec, nil, true, nil)
		if err == nil || strings.Contains(err.Error(), "hun") {
			t.Errorf("openStoreWith(%q): %v", spec, err)
		}
	}
}
