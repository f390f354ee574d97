package coapclient

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
)

// TestFileSessionCacheResumesAcrossClients: two clients that share only a
// session file resume, by ticket and by session ID; the file is 0600.
func TestFileSessionCacheResumesAcrossClients(t *testing.T) {
	key := []byte("secretPSK")
	scfg := &dtls.Config{PSK: func([]byte) ([]byte, error) { return key, nil }, SessionStore: store.NewMemory(store.MemoryConfig{})}
	srv, err := coapserver.New(coapserver.Options{DTLS: scfg})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l) //nolint:errcheck // ends with Stop
	defer srv.Stop()
	for _, typ := range []negotiation.Type{negotiation.SessionTicket, negotiation.SessionID} {
		path := filepath.Join(t.TempDir(), "session")
		for i, want := range []bool{false, true, true} {
			cache, err := NewFileSessionCache(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &dtls.Config{
				PSK: func([]byte) ([]byte, error) { return key, nil }, PSKIdentityHint: []byte("client1"),
				Resumption: []negotiation.Type{typ}, ClientSessionCache: cache,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := Dial(ctx, l.Addr().String(), cfg)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, "/time"); err != nil {
				t.Fatal(err)
			}
			st := c.ConnectionState()
			c.Close()
			cancel()
			if st.Resumed != want || st.Resumption != typ || cache.Err() != nil {
				t.Fatalf("%v run %d: resumed=%v resumption=%v err=%v", typ, i, st.Resumed, st.Resumption, cache.Err())
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("session file: %v %v", fi, err)
			}
		}
	}
}

func TestFileSessionCacheRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session")
	if err := os.WriteFile(path, []byte("key\nnot base64!!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileSessionCache(path); err == nil {
		t.Fatal("garbage session file accepted")
	}
}
