// Command cluster runs two CoAP-over-DTLS servers that share one Redis —
// sessions, client_state records and the ticket key schedule — so a device
// that made its session with one server resumes it with the other, by every
// resumption type.
//
//	redis-server --port 6379 --save '' &
//	go run ./examples/cluster                                  # -redis redis://127.0.0.1:6379/0
//	go run ./examples/cluster -redis redis://10.0.0.5:6379/2 -store-key $(openssl rand -hex 32)
//
// Each server is set up as a `dtlsresume serve --store redis://… --store-key
// HEX` process would be: its own connection to Redis (store.NewRedis) as
// its Config.SessionStore, and a ticket key ring that follows the schedule
// kept in Redis (store.SharedKeyRing) as its Config.TicketKeys. The device
// names the cluster, not a server (Config.ServerName): a session belongs
// to the server identity it was made with. What Redis holds (master
// secrets, ticket keys) is sealed under the -store-key, which every server
// of the cluster needs; without one, the run makes a random key that its two
// servers share.
//
// It prints, per resumption type, whether each server resumed: A makes the
// session, B resumes it. Run it again and the client_state device resumes
// on A too: its record from the last run is still in Redis (tickets and
// session IDs lived in the previous process's session cache).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// The devices' PSK (here one for all; a server looks keys up by identity).
const (
	pskIdentity = "sensor-17"
	pskKey      = "the key of sensor-17"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	redisURL := fs.String("redis", "redis://127.0.0.1:6379/0", "the Redis both servers share, redis://[:PASSWORD@]HOST:PORT[/DB]")
	keyHex := fs.String("store-key", "", "operator key, 64 hex digits: seals what Redis holds (default: a fresh random key for this run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Master secrets and ticket keys are never left in Redis in the clear
	// (docs/decisions.md 46): without -store-key this run seals them under
	// a key of its own, which its two servers share.
	key := make([]byte, store.KeySize)
	if *keyHex != "" {
		var err error
		if key, err = hex.DecodeString(*keyHex); err != nil || len(key) != store.KeySize {
			return fmt.Errorf("-store-key: want %d hex digits", 2*store.KeySize)
		}
	} else if _, err := rand.Read(key); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Fail at once, and say why, when no Redis answers: a running server
	// would only fall back to full handshakes.
	if err := ping(ctx, *redisURL, key); err != nil {
		return fmt.Errorf("no Redis answers at %s (%v): start one (redis-server --port 6379 --save '') or give -redis redis://HOST:PORT/DB", store.RedactURL(*redisURL), err)
	}

	var addrs []string
	for i := 0; i < 2; i++ {
		addr, stop, err := startServer(ctx, *redisURL, key, logger)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(out, "server %c: %s\n", 'A'+i, addr)
		addrs = append(addrs, addr)
	}

	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		cfg := &dtls.Config{
			PSK:             func([]byte) ([]byte, error) { return []byte(pskKey), nil },
			PSKIdentityHint: []byte(pskIdentity),
			Resumption:      []negotiation.Type{typ},
			ServerName:      "coap-cluster.example", // one name for every server of the cluster
		}
		if typ != negotiation.ClientState { // client_state keeps nothing on the device
			cfg.ClientSessionCache = dtls.NewLRUClientSessionCache(1)
		}
		results := make([]string, len(addrs))
		for i, addr := range addrs {
			state, err := getTime(ctx, addr, cfg)
			if err != nil {
				return fmt.Errorf("%s on server %c: %w", typ, 'A'+i, err)
			}
			results[i] = fmt.Sprintf("server %c resumed=%-5v", 'A'+i, state.Resumed)
		}
		fmt.Fprintf(out, "%-16s%s\n", typ.String()+":", strings.TrimSpace(strings.Join(results, "  ")))
	}
	return nil
}

// ping checks that Redis answers.
func ping(ctx context.Context, url string, key []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r, err := store.NewRedis(ctx, url, store.RedisConfig{Key: key})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Ping(ctx)
}

// startServer starts one server of the cluster on a free port of
// 127.0.0.1, as its own process would: its own Redis client, its own ring
// following the shared key schedule.
func startServer(ctx context.Context, url string, key []byte, logger *slog.Logger) (addr string, stop func(), err error) {
	r, err := store.NewRedis(ctx, url, store.RedisConfig{Key: key, Logger: logger})
	if err != nil {
		return "", nil, err
	}
	ring, keySync, err := store.SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{}, store.KeySyncConfig{Logger: logger})
	if err != nil {
		r.Close()
		return "", nil, err
	}
	cfg := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			if string(identity) != pskIdentity {
				return nil, fmt.Errorf("unknown PSK identity %q", identity)
			}
			return []byte(pskKey), nil
		},
		SessionStore: r,    // session IDs and client_state records
		TicketKeys:   ring, // RFC 5077 tickets any server of the cluster opens
		Logger:       logger,
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg}) // DefaultMux: /time, /echo, ...
	if err != nil {
		keySync.Stop()
		r.Close()
		return "", nil, err
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		keySync.Stop()
		r.Close()
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	return l.Addr().String(), func() {
		srv.Stop()
		<-done
		keySync.Stop() // after the listener: handshakes may still open tickets
		r.Close()
	}, nil
}

// getTime does one CoAP GET /time on a new DTLS connection and returns the
// connection's state.
func getTime(ctx context.Context, addr string, cfg *dtls.Config) (dtls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := coapclient.Dial(ctx, addr, cfg)
	if err != nil {
		return dtls.ConnectionState{}, err
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/time")
	if err != nil {
		return dtls.ConnectionState{}, err
	}
	if len(resp.Payload) == 0 {
		return dtls.ConnectionState{}, errors.New("GET /time: empty answer")
	}
	return c.ConnectionState(), nil
}
