package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// plantTicketKey is what someone who can write to Redis but holds no store
// key does to forge tickets: publish a ticket key of their own, in the
// clear, active now. It returns a ring that seals with that key.
func plantTicketKey(t *testing.T, srv *redisServer, prefix string) *ticketfmt.KeyRing {
	t.Helper()
	var secret [ticketfmt.KeySize]byte
	rand.Read(secret[:])
	k, err := ticketfmt.NewKey(secret[:])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ek := ticketfmt.ExportedKey{KeyInfo: ticketfmt.KeyInfo{Name: k.Name, Created: now.Add(-time.Minute),
		NotBefore: now.Add(-time.Minute), SealUntil: now.Add(time.Hour)}, Secret: secret}
	c := srv.client()
	defer c.Close()
	if err := c.HSet(context.Background(), prefix+"ticketkeys", hex.EncodeToString(k.Name[:]), encodeTicketKey(nil, ek)).Err(); err != nil {
		t.Fatal(err)
	}
	forger, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{Keys: []ticketfmt.ExportedKey{ek}})
	if err != nil {
		t.Fatal(err)
	}
	return forger
}

func sealTestTicket(t *testing.T, ring *ticketfmt.KeyRing) []byte {
	t.Helper()
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: time.Now(), Lifetime: time.Hour,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("victim")}}
	tk, err := ring.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestSharedKeyRingSealedAtRest: under a store key, the ticket key schedule
// in Redis holds no key secret, a ticket key planted in the clear by
// someone who can write to Redis is ignored (tickets forged with it do not
// open) and left alone, and servers with another store key neither use nor
// delete each other's schedule. Without a store key (the control) the
// schedule is in the clear and a planted key is adopted: forged tickets
// open.
func TestSharedKeyRingSealedAtRest(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	c := srv.client()
	defer c.Close()
	newRing := func(prefix string, key []byte, logs *logBuffer) (*ticketfmt.KeyRing, *KeySync) {
		cfg := RedisConfig{Prefix: prefix, Key: key}
		if logs != nil {
			cfg.Logger = logs.logger()
		}
		r := newTestRedis(t, srv, cfg)
		ring, ks, err := SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{}, KeySyncConfig{Manual: true, Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		return ring, ks
	}
	holdsSecret := func(prefix string, ring *ticketfmt.KeyRing) bool {
		t.Helper()
		m, err := c.HGetAll(ctx, prefix+"ticketkeys").Result()
		if err != nil || len(m) == 0 {
			t.Fatalf("published keys: %v %v", m, err)
		}
		for _, v := range m {
			for _, k := range ring.Export() {
				if strings.Contains(v, string(k.Secret[:])) {
					return true
				}
			}
		}
		return false
	}

	t.Run("sealed", func(t *testing.T) {
		const prefix = "sealed:"
		var logs logBuffer
		ring, ks := newRing(prefix, testStoreKey, &logs)
		peer, _ := newRing(prefix, testStoreKey, nil)
		if holdsSecret(prefix, ring) {
			t.Error("Redis holds a ticket key secret in the clear")
		}
		if _, err := peer.Open(sealTestTicket(t, ring), ticketfmt.LabelServer); err != nil {
			t.Fatalf("a server with the same store key cannot open the ticket: %v", err)
		}

		forger := plantTicketKey(t, srv, prefix)
		forged := sealTestTicket(t, forger)
		for range 2 {
			if err := ks.SyncNow(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ring.Open(forged, ticketfmt.LabelServer); err == nil {
			t.Error("a ticket forged with a key planted in Redis opens")
		}
		if n, _ := c.HLen(ctx, prefix+"ticketkeys").Result(); n != 2 {
			t.Errorf("%d fields after the sync, want ours and the planted one", n)
		}
		if got := strings.Count(logs.String(), "not sealed under our store key"); got != 1 {
			t.Errorf("%d warnings about the planted key, want 1:\n%s", got, logs.String())
		}

		// Another store key, same prefix: its schedule and ours coexist.
		other := bytes.Repeat([]byte{0x33}, KeySize)
		stranger, sks := newRing(prefix, other, nil)
		if _, err := stranger.Open(sealTestTicket(t, ring), ticketfmt.LabelServer); err == nil {
			t.Error("a server with another store key opens our tickets")
		}
		if err := sks.SyncNow(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ks.SyncNow(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ring.Open(sealTestTicket(t, stranger), ticketfmt.LabelServer); err == nil {
			t.Error("we open the tickets of a server with another store key")
		}
		if _, err := peer.Open(sealTestTicket(t, ring), ticketfmt.LabelServer); err != nil {
			t.Errorf("after the stranger synced, our own tickets no longer open: %v", err)
		}
		if n, _ := c.HLen(ctx, prefix+"ticketkeys").Result(); n != 3 {
			t.Errorf("%d fields, want ours, the stranger's and the planted one", n)
		}
	})

	t.Run("insecure", func(t *testing.T) {
		const prefix = "plain:"
		ring, ks := newRing(prefix, nil, nil)
		if !holdsSecret(prefix, ring) {
			t.Error("the control: a store without a key holds no ticket key secret")
		}
		forged := sealTestTicket(t, plantTicketKey(t, srv, prefix))
		if err := ks.SyncNow(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ring.Open(forged, ticketfmt.LabelServer); err != nil {
			t.Errorf("the control: a ticket forged with a planted key does not open without a store key: %v", err)
		}
	})
}

// TestRedisURLErrorsHidePassword: whatever is wrong with a Redis URL, the
// error names it without quoting the password, not even the part of a
// malformed one that spills into the path or query.
func TestRedisURLErrorsHidePassword(t *testing.T) {
	for _, u := range []string{
		"redis://:hunter2-Secret@127.0.0.1:notaport",
		"redis://:hunter2/Secret@127.0.0.1:6379",
		"redis://:hunter2?Secret@127.0.0.1",
		"redis://:hunter2#Secret@127.0.0.1",
		"redis://:hunter2%zzSecret@127.0.0.1",
		"redis://:hunter2 Secret@127.0.0.1",
		"redis://:hunter2-Secret@127.0.0.1/0/1",
		"redis://:hunter2-Secret@127.0.0.1/x",
		"redis://:hunter2-Secret@127.0.0.1?dial_timeout=soon",
		"redis://:hunter2-Secret@127.0.0.1?nosuch=1",
		"redis://user:hunter2-Secret@[::1",
		"redis://:hunter2-Secret@ho st:1",
		"http://:hunter2-Secret@127.0.0.1",
		"redis://:hunter2@Secret@127.0.0.1:x",
		"redis:/:hunter2-Secret@127.0.0.1:x",
		"unix://:hunter2-Secret@",
	} {
		for _, err := range []error{CheckRedisURL(u), func() error {
			_, err := NewRedis(context.Background(), u, RedisConfig{})
			return err
		}()} {
			if err == nil {
				t.Errorf("%q accepted", u)
				continue
			}
			if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "Secret") || !strings.Contains(msg, "redis URL") {
				t.Errorf("%q: %s", u, msg)
			}
		}
	}
	if err := CheckRedisURL("redis://:hunter2-Secret@127.0.0.1:6379/1"); err != nil {
		t.Errorf("good URL: %v", err)
	}
	for u, want := range map[string]string{
		"redis://:secret@host:6379/1":   "redis://***@host:6379/1",
		"rediss://user:pw@host":         "rediss://***@host",
		"redis://:p@ss@host":            "redis://***@host",
		"redis://:pa/ss@host:1":         "redis://***@host:1",
		"redis:pw@host":                 "redis:***@host",
		":pw@host":                      "***@host",
		"x:pw://y@h":                    "x:***@h",
		"redis://host:6379/0":           "redis://host:6379/0",
		"file:/var/lib/dtlsresume/s":    "file:/var/lib/dtlsresume/s",
		"":                              "",
		"@":                             "***@",
		"redis://h/0?client_name=a@b":   "redis://***@b",
		"1redis://:pw@host":             "***@host",
		"re dis://:pw@host":             "***@host",
		"unix://:pw@/run/redis.sock":    "unix://***@/run/redis.sock",
		"REDIS+x.y-z://u:pw@host:6379/": "REDIS+x.y-z://***@host:6379/",
	} {
		if got := RedactURL(u); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", u, got, want)
		}
	}
}
