package main

// Secrets at rest (docs/decisions.md 46), on real processes: a
// Redis store without a key is an explicit, logged choice; with one, Redis
// holds no master secret and no usable ticket key; a Redis password never
// shows in an error or a log; `dial --session` never writes its secret
// through a file or link planted next to its session file.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	bin "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/cryptobyte"
)

// runExit runs the binary with args (without $DTLSRESUME_STORE_KEY) and
// returns its exit code and output; a process still running after 10 s is
// killed and fails the test.
func runExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), storeKeyEnv+"=")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after 10 s, want an exit:\n%s", strings.Join(args, " "), out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// startDTLSServer starts `dtlsresume listen` or `serve` on a loopback port
// without $DTLSRESUME_STORE_KEY and returns it and its address.
func startDTLSServer(t *testing.T, command string, args ...string) (*peers.Process, string) {
	t.Helper()
	t.Setenv(storeKeyEnv, "")
	p := peers.Start(t, binary, append([]string{command, "--addr", "127.0.0.1:0"}, args...)...)
	m, err := p.WaitForRegexp(regexp.MustCompile(`(?:listening on|serving CoAP over DTLS on) udp (\S+)`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}

// TestServeRedisStoreNeedsKey: serve and listen with a redis:// store and
// no store key refuse to start (exit 2) and say how to go on.
func TestServeRedisStoreNeedsKey(t *testing.T) {
	port := freeTCPPort(t)
	startRedisServer(t, port)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	for _, command := range []string{"serve", "listen"} {
		code, out := runExit(t, command, "--addr", "127.0.0.1:0", "--store", url)
		if code != 2 || !strings.Contains(out, "--store-key") || !strings.Contains(out, "--store-insecure") ||
			!strings.Contains(out, storeKeyEnv) || strings.Count(strings.TrimSpace(out), "\n") > 1 {
			t.Errorf("%s --store %s without a key: exit %d, output:\n%s", command, url, code, out)
		}
	}
}

// TestServeStoreURLHidesPassword: a malformed Redis URL with a password is
// a usage error that does not show the password, and a good one with a
// password (Redis down) starts without logging it.
func TestServeStoreURLHidesPassword(t *testing.T) {
	const pw = "hunter2-Secret"
	for _, url := range []string{
		"redis://:" + pw + "@127.0.0.1:notaport/0",
		"redis://user:" + pw + "@127.0.0.1:6379/zero",
		"redis://:hunter2/Secret@127.0.0.1:6379",
		"redis://:hunter2?Secret@127.0.0.1:6379",
		"redis:/:" + pw + "@127.0.0.1:6379",
	} {
		code, out := runExit(t, "serve", "--addr", "127.0.0.1:0", "--store", url, "--store-key", testStoreKeyHex)
		if code != 2 || strings.Contains(out, "hunter2") || strings.Contains(out, "Secret") || !strings.Contains(out, "--store") {
			t.Errorf("--store %s: exit %d, output:\n%s", url, code, out)
		}
	}
	srv, _ := startDTLSServer(t, "serve", "--store", fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", pw, freeTCPPort(t)),
		"--store-insecure", "--log-level", "debug")
	if err := srv.WaitFor("IN THE CLEAR", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := srv.Output(); strings.Contains(out, "hunter2") || !strings.Contains(out, "redis://***@127.0.0.1:") {
		t.Errorf("serve logs:\n%s", out)
	}
}

// clientSession is what a `dial --session` file holds.
type clientSession struct {
	key       string // the cache key line
	sessionID []byte
	ticket    []byte
	state     *ticketfmt.State
}

func readSessionFile(t *testing.T, path string) clientSession {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, enc, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	s := cryptobyte.String(raw)
	var version uint8
	var id, ticket, st cryptobyte.String
	if !s.ReadUint8(&version) || version != 1 || !s.ReadUint8LengthPrefixed(&id) || !s.ReadUint16LengthPrefixed(&ticket) ||
		!s.ReadUint16LengthPrefixed(&st) || !s.Empty() {
		t.Fatalf("session file %s: malformed", path)
	}
	state, err := ticketfmt.ParseState(st)
	if err != nil {
		t.Fatal(err)
	}
	return clientSession{key: key, sessionID: id, ticket: ticket, state: state}
}

func writeSessionFile(t *testing.T, path string, s clientSession) {
	t.Helper()
	st, err := s.state.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.sessionID) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.ticket) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st) })
	if err := os.WriteFile(path, []byte(s.key+"\n"+base64.StdEncoding.EncodeToString(b.BytesOrPanic())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// dialJSON runs `dial --json` against addr with the demo PSK and returns
// its result.
func dialJSON(t *testing.T, addr string, args ...string) dialResult {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"dial", "--addr", addr, "--psk", demoPSKArg, "--message", "x", "--json", "--timeout", "5s"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = append(out, ee.Stderr...)
		}
		t.Fatalf("dial %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var res dialResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("dial: %q: %v", out, err)
	}
	return res
}

// redisDump is every key and value in Redis, hash fields included.
func redisDump(t *testing.T, c *redis.Client) []byte {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, k := range keys {
		all.WriteString(k)
		switch typ, _ := c.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := c.Get(ctx, k).Bytes()
			all.Write(v)
		case "hash":
			m, _ := c.HGetAll(ctx, k).Result()
			for f, v := range m {
				all.WriteString(f)
				all.WriteString(v)
			}
		}
	}
	return all.Bytes()
}

// stolenTicketKeys are the ticket keys that someone who can read Redis
// takes from the published schedule: those stored in the clear
// (version 1, the 16-byte secret, three times).
func stolenTicketKeys(t *testing.T, c *redis.Client) []ticketfmt.ExportedKey {
	t.Helper()
	m, err := c.HGetAll(context.Background(), "dtlsresume:ticketkeys").Result()
	if err != nil || len(m) == 0 {
		t.Fatalf("published ticket keys: %v %v", m, err)
	}
	var keys []ticketfmt.ExportedKey
	for field, v := range m {
		if len(v) != 1+ticketfmt.KeySize+24 || v[0] != 1 {
			continue
		}
		k, err := ticketfmt.NewKey([]byte(v[1 : 1+ticketfmt.KeySize]))
		if err != nil || hex.EncodeToString(k.Name[:]) != field {
			continue
		}
		now := time.Now()
		ek := ticketfmt.ExportedKey{KeyInfo: ticketfmt.KeyInfo{Name: k.Name, Created: now.Add(-time.Minute),
			NotBefore: now.Add(-time.Minute), SealUntil: now.Add(time.Hour)}}
		copy(ek.Secret[:], v[1:])
		keys = append(keys, ek)
	}
	return keys
}

// plantTicketKey publishes, in the clear, a ticket key of the attacker's
// choosing, active now, and returns a ring that seals with it.
func plantTicketKey(t *testing.T, c *redis.Client) *ticketfmt.KeyRing {
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
	v := append([]byte{1}, secret[:]...) // store's StoredTicketKey, in the clear
	for _, at := range []time.Time{ek.Created, ek.NotBefore, ek.SealUntil} {
		v = bin.BigEndian.AppendUint64(v, uint64(at.UnixNano()))
	}
	if err := c.HSet(context.Background(), "dtlsresume:ticketkeys", hex.EncodeToString(k.Name[:]), v).Err(); err != nil {
		t.Fatal(err)
	}
	ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{Keys: []ticketfmt.ExportedKey{ek}})
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// forgedResumes writes a session file whose ticket the attacker sealed
// over state with a master secret of their choosing, and reports whether
// `dial` resumes with it (the server accepted the forged ticket) within a
// few tries: the first may only make the server fetch the key schedule.
func forgedResumes(t *testing.T, addr string, legit clientSession, serverState *ticketfmt.State, ring *ticketfmt.KeyRing) bool {
	t.Helper()
	forgedSecret := make([]byte, 48)
	rand.Read(forgedSecret)
	st := *serverState
	copy(st.MasterSecret[:], forgedSecret)
	st.Timestamp = time.Now()
	ticket, err := ring.Seal(&st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	cs := *legit.state
	copy(cs.MasterSecret[:], forgedSecret)
	forged := clientSession{key: legit.key, sessionID: legit.sessionID, ticket: ticket, state: &cs}
	path := filepath.Join(t.TempDir(), "forged")
	for range 4 {
		writeSessionFile(t, path, forged)
		if dialJSON(t, addr, "--resumption", "session_ticket", "--session", path).Resumed {
			return true
		}
		time.Sleep(400 * time.Millisecond)
	}
	return false
}

// TestServeRedisStoreSecretsAtRest runs `dtlsresume listen` (serve's
// server setup, with an echo that `dial --session` talks to) on
// redis-server twice:
// with --store-insecure (the control, which shows the threat) and with a
// store key. Insecure: the server warns, Redis holds a session's master
// secret, and tickets forged with a ticket key read from Redis, or with one
// written into it, resume. Sealed: the server says so, no master secret is
// in Redis, no ticket key can be read from it, and a ticket key written
// into it is ignored, so forged tickets get full handshakes.
func TestServeRedisStoreSecretsAtRest(t *testing.T) {
	for _, mode := range []string{"insecure", "sealed"} {
		t.Run(mode, func(t *testing.T) {
			port := freeTCPPort(t)
			startRedisServer(t, port)
			c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
			defer c.Close()
			args := []string{"--store", fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
			if mode == "insecure" {
				args = append(args, "--store-insecure")
			} else {
				args = append(args, "--store-key", testStoreKeyHex)
			}
			srv, addr := startDTLSServer(t, "listen", args...)
			logLine := map[string]*regexp.Regexp{
				"insecure": regexp.MustCompile(`level=WARN msg="session store: redis IN THE CLEAR \(--store-insecure\)`),
				"sealed":   regexp.MustCompile(`level=INFO msg="session store: redis, records and ticket keys sealed under the store key`),
			}[mode]
			if !logLine.MatchString(srv.Output()) {
				t.Errorf("no log line %s:\n%s", logLine, srv.Output())
			}

			dir := t.TempDir()
			sidFile, ticketFile := filepath.Join(dir, "sid"), filepath.Join(dir, "ticket")
			dialJSON(t, addr, "--resumption", "session_id", "--session", sidFile)
			dialJSON(t, addr, "--resumption", "session_ticket", "--session", ticketFile)
			sid, tk := readSessionFile(t, sidFile), readSessionFile(t, ticketFile)
			if len(sid.sessionID) == 0 || len(tk.ticket) == 0 {
				t.Fatalf("session files: id %x, ticket %x", sid.sessionID, tk.ticket)
			}
			if !dialJSON(t, addr, "--resumption", "session_id", "--session", sidFile).Resumed {
				t.Fatal("no resumption by session ID through Redis")
			}

			dump := redisDump(t, c)
			inRedis := bytes.Contains(dump, sid.state.MasterSecret[:]) || bytes.Contains(dump, sid.sessionID)
			if inRedis != (mode == "insecure") {
				t.Errorf("%s: a session's master secret or ID in Redis: %t", mode, inRedis)
			}
			if bytes.Contains(dump, tk.state.MasterSecret[:]) {
				t.Errorf("%s: the ticket session's master secret is in Redis", mode)
			}

			// Read a ticket key from Redis, open the client's ticket with it,
			// and reseal it with a master secret of our own.
			stolen := stolenTicketKeys(t, c)
			var opened *ticketfmt.State
			for _, k := range stolen {
				ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{Keys: []ticketfmt.ExportedKey{k}})
				if err != nil {
					t.Fatal(err)
				}
				if st, err := ring.Open(tk.ticket, ticketfmt.LabelServer); err == nil {
					opened = st
					if !forgedResumes(t, addr, tk, st, ring) {
						t.Errorf("%s: a ticket forged with the ticket key read from Redis does not resume", mode)
					}
				}
			}
			if (opened != nil) != (mode == "insecure") {
				t.Errorf("%s: %d ticket keys read from Redis in the clear; one opens the client's ticket: %t", mode, len(stolen), opened != nil)
			}

			// Write a ticket key of our own into Redis and forge with it.
			serverState := *tk.state // the client's view, made the server's
			serverState.Peer = ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte(demoPSKIdentity)}
			serverState.ServerName = ""
			if opened != nil {
				serverState = *opened
			}
			if got := forgedResumes(t, addr, tk, &serverState, plantTicketKey(t, c)); got != (mode == "insecure") {
				t.Errorf("%s: a ticket forged with a ticket key written into Redis resumes: %t", mode, got)
			}
		})
	}
}

// TestDialSessionFileIgnoresPlantedTmp: `dial --session SESSION` with a
// world-readable SESSION.tmp, or a SESSION.tmp link to another file, planted
// beforehand: SESSION ends up a 0600 regular file, the planted files are
// untouched, and no other file holds the session.
func TestDialSessionFileIgnoresPlantedTmp(t *testing.T) {
	_, addr := startListen(t)
	for _, plant := range []string{"world-readable file", "symlink"} {
		t.Run(plant, func(t *testing.T) {
			dir := t.TempDir()
			session := filepath.Join(dir, "SESSION")
			elsewhere := filepath.Join(t.TempDir(), "elsewhere") // another directory
			planted := map[string]string{elsewhere: "someone else's file\n"}
			if err := os.WriteFile(elsewhere, []byte(planted[elsewhere]), 0o644); err != nil {
				t.Fatal(err)
			}
			if plant == "symlink" {
				if err := os.Symlink(elsewhere, session+".tmp"); err != nil {
					t.Fatal(err)
				}
			} else {
				planted[session+".tmp"] = "planted\n"
				if err := os.WriteFile(session+".tmp", []byte(planted[session+".tmp"]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for name := range planted {
				if err := os.Chmod(name, 0o644); err != nil { // whatever the umask
					t.Fatal(err)
				}
			}
			for i, want := range []bool{false, true} {
				if res := dialJSON(t, addr, "--resumption", "session_ticket", "--session", session); res.Resumed != want {
					t.Fatalf("run %d: resumed %t", i, res.Resumed)
				}
			}
			fi, err := os.Lstat(session)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Errorf("SESSION: %v, want a 0600 regular file", fi.Mode())
			}
			secret := readSessionFile(t, session).state.MasterSecret
			data, _ := os.ReadFile(session)
			_, encoded, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
			for name, want := range planted {
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(name); string(got) != want || fi.Mode().Perm() != 0o644 {
					t.Errorf("%s: %q, %v; want %q, 0644 unchanged", name, got, fi.Mode(), want)
				}
			}
			for _, d := range []string{dir, filepath.Dir(elsewhere)} {
				entries, _ := os.ReadDir(d)
				for _, e := range entries {
					name := filepath.Join(d, e.Name())
					if _, ok := planted[name]; !ok && name != session && name != session+".tmp" {
						t.Errorf("unexpected file %s", name)
					}
					if b, _ := os.ReadFile(name); name != session && (bytes.Contains(b, secret[:]) || strings.Contains(string(b), encoded)) {
						t.Errorf("%s holds the session", name)
					}
				}
			}
		})
	}
}
