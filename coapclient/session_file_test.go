package coapclient

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	addr := startSessionTestServer(t)
	for _, typ := range []negotiation.Type{negotiation.SessionTicket, negotiation.SessionID} {
		path := filepath.Join(t.TempDir(), "session")
		for i, want := range []bool{false, true, true} {
			cache, st := getWithSessionFile(t, addr, path, typ)
			if st.Resumed != want || st.Resumption != typ || cache.Err() != nil {
				t.Fatalf("%v run %d: resumed=%v resumption=%v err=%v", typ, i, st.Resumed, st.Resumption, cache.Err())
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("session file: %v %v", fi, err)
			}
		}
	}
}

var sessionTestPSK = []byte("secretPSK")

// startSessionTestServer serves CoAP over DTLS on loopback until the test
// ends and returns its address.
func startSessionTestServer(t *testing.T) string {
	t.Helper()
	scfg := &dtls.Config{PSK: func([]byte) ([]byte, error) { return sessionTestPSK, nil }, SessionStore: store.NewMemory(store.MemoryConfig{})}
	srv, err := coapserver.New(coapserver.Options{DTLS: scfg})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// getWithSessionFile is one client process's run: it loads the session file
// at path, GETs /time offering typ, and returns the cache and the
// connection's state.
func getWithSessionFile(t *testing.T, addr, path string, typ negotiation.Type) (*FileSessionCache, dtls.ConnectionState) {
	t.Helper()
	cache, err := NewFileSessionCache(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &dtls.Config{
		PSK: func([]byte) ([]byte, error) { return sessionTestPSK, nil }, PSKIdentityHint: []byte("client1"),
		Resumption: []negotiation.Type{typ}, ClientSessionCache: cache,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, "/time"); err != nil {
		t.Fatal(err)
	}
	return cache, c.ConnectionState()
}

// TestFileSessionCacheIgnoresPlantedTmp: a world-readable file, or a link
// to elsewhere, planted at PATH.tmp (where the cache once wrote) is neither
// written nor followed: after a handshake that saves the session, PATH is a
// 0600 regular file, the planted file and the link's target are unchanged,
// and no other file in the directory holds the session.
func TestFileSessionCacheIgnoresPlantedTmp(t *testing.T) {
	addr := startSessionTestServer(t)
	for _, plant := range []string{"world-readable file", "symlink"} {
		t.Run(plant, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "session")
			elsewhere := filepath.Join(dir, "elsewhere")
			planted := map[string]string{elsewhere: "not a session\n"}
			if err := os.WriteFile(elsewhere, []byte(planted[elsewhere]), 0o644); err != nil {
				t.Fatal(err)
			}
			if plant == "symlink" {
				if err := os.Symlink(elsewhere, path+".tmp"); err != nil {
					t.Fatal(err)
				}
			} else {
				planted[path+".tmp"] = "planted\n"
				if err := os.WriteFile(path+".tmp", []byte(planted[path+".tmp"]), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path+".tmp", 0o644); err != nil { // whatever the umask
					t.Fatal(err)
				}
			}
			cache, _ := getWithSessionFile(t, addr, path, negotiation.SessionTicket)
			if err := cache.Err(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Fatalf("session file: %v, want a 0600 regular file", fi.Mode())
			}
			session, _ := os.ReadFile(path)
			_, encoded, _ := strings.Cut(strings.TrimSpace(string(session)), "\n")
			if len(encoded) < 64 {
				t.Fatalf("session file %q", session)
			}
			for name, want := range planted {
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(name); string(got) != want || fi.Mode().Perm() != 0o644 {
					t.Errorf("%s: %q, %v; want %q, 0644 unchanged", name, got, fi.Mode(), want)
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				name := filepath.Join(dir, e.Name())
				if name == path {
					continue
				}
				if _, ok := planted[name]; !ok && name != path+".tmp" {
					t.Errorf("unexpected file %s", e.Name())
				}
				if b, _ := os.ReadFile(name); strings.Contains(string(b), encoded) {
					t.Errorf("%s holds the session", e.Name())
				}
			}
			// The next client resumes from the file.
			if _, st := getWithSessionFile(t, addr, path, negotiation.SessionTicket); !st.Resumed {
				t.Error("no resumption from the session file")
			}
		})
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
