package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

func cmdListen(args []string, stdout, stderr io.Writer) error {
	l, cfg, logger, cleanup, err := startServer("listen", defaultAddr, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	defer l.Close()
	fmt.Fprintf(stdout, "listening on udp %s (DTLS 1.2 echo)\n", l.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		c, err := l.AcceptWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				// SIGTERM: hand the connections on before closing.
				saveConnections(l, logger, stdout)
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go serveEcho(c.(*dtls.Conn), echoBufferSize(cfg), logger)
	}
}

// echoBufferSize is the read buffer of one echo connection: the MTU, since
// a reply never carries more than one datagram. A 64 KiB buffer per
// connection was most of a held connection's resident memory.
func echoBufferSize(cfg *dtls.Config) int {
	if cfg.MTU > 0 {
		return cfg.MTU
	}
	return dtls.DefaultMTU
}

// serveEcho answers every datagram with the same bytes until the peer
// closes.
func serveEcho(c *dtls.Conn, bufSize int, logger *slog.Logger) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if err != nil {
			logger.Debug("connection ended", "peer", c.RemoteAddr().String(), "err", err)
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			logger.Warn("echo write", "peer", c.RemoteAddr().String(), "err", err)
			return
		}
	}
}

// startServer is what listen and serve share: it parses the server flags,
// completes the Config (demo credentials, store, ticket keys, metrics,
// logging) and opens the listener. cleanup releases the store and metrics
// after the listener is closed.
func startServer(name, addr string, args []string, stdout, stderr io.Writer) (*dtls.Listener, *dtls.Config, *slog.Logger, func(), error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sec securityFlags
	sec.registerAddr(fs, false, addr)
	sec.registerSecurity(fs, false)
	sec.registerServer(fs)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json (one object per line)")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cfg, err := sec.config(false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	laddr, err := net.ResolveUDPAddr("udp", sec.addr)
	if err != nil {
		return nil, nil, nil, nil, usagef("--addr %q: %v", sec.addr, err)
	}
	demo := cfg.PSK == nil && len(cfg.Certificates) == 0
	if err := demoCredentials(cfg, stdout); err != nil {
		return nil, nil, nil, nil, err
	}
	if demo && !laddr.IP.IsLoopback() {
		// The demo PSK is printed in the README: on a reachable address
		// anyone can use it.
		logger.Warn("serving with the public demo PSK on an address others can reach; give --psk or --cert", "addr", laddr.String())
	}
	cfg.Logger = logger
	cleanup, err := sec.setupServer(cfg, logger, stdout)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	l, err := dtls.Listen("udp", laddr, cfg)
	if err != nil {
		cleanup()
		return nil, nil, nil, nil, err
	}
	if st := sec.restartStore; st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := l.RestoreConnections(ctx, st)
		cancel()
		if err != nil {
			logger.Warn("restoring saved connections", "err", err)
		}
		if n > 0 {
			fmt.Fprintf(stdout, "restored %d connections saved by the previous process\n", n)
		}
		restartStores.Store(l, st)
	}
	return l, cfg, logger, cleanup, nil
}

// restartStores remembers, per listener, where saveConnections saves.
var restartStores sync.Map

// saveConnections saves l's established connections for the next process
// on the same address, when its store persists (docs/decisions.md 49); call
// it on SIGTERM before closing l.
func saveConnections(l *dtls.Listener, logger *slog.Logger, stdout io.Writer) {
	v, ok := restartStores.Load(l)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	n, err := l.SaveConnections(ctx, v.(dtls.SessionStore))
	if err != nil {
		logger.Warn("saving connections for the next process", "err", err)
		return
	}
	fmt.Fprintf(stdout, "saved %d connections for the next process in %v\n", n, time.Since(start).Round(time.Millisecond))
}

// demoCredentials gives a server started without --psk or --cert the demo
// PSK and a fresh self-signed certificate, and prints how to connect.
func demoCredentials(cfg *dtls.Config, stdout io.Writer) error {
	if cfg.PSK != nil || len(cfg.Certificates) > 0 {
		return nil
	}
	key := []byte("secretPSK-dtlsresume")
	cfg.PSK = func(id []byte) ([]byte, error) {
		if string(id) != demoPSKIdentity {
			return nil, errors.New("unknown PSK identity")
		}
		return key, nil
	}
	cert, err := selfsign.GenerateSelfSignedWithDNS("localhost", "localhost")
	if err != nil {
		return err
	}
	cfg.Certificates = []tls.Certificate{cert}
	fmt.Fprintf(stdout, "demo credentials: --psk %s:%s (and a fresh self-signed ECDSA certificate)\n", demoPSKIdentity, demoPSKHex)
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}
