package main

import (
	"context"
	"errors"
	"fmt"
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
	for _, spec := range []string{"", "memory"} {
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
		{"mysql://x", nil, "", "want memory, file:PATH or redis://"},
		{"redis://host:notaport", nil, "", "--store"},
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
	if got := redactURL("redis://:secret@host:6379/1"); got != "redis://***@host:6379/1" {
		t.Errorf("redactURL = %q", got)
	}
	for spec, want := range map[string]string{"": "memory", "memory": "memory", "file:/x": "file", "redis://h:1": "redis", "rediss://h:1/2": "redis"} {
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
	s3, _, close3, err := openStore(fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)), nil, nil)
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
