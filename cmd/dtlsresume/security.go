package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/metrics"
	"github.com/dtlsresume/dtlsresume/negotiation"
)

// Demo credentials used when no PSK or certificate is given: printed at
// start so that other tools can connect.
const (
	demoPSKIdentity = "dtlsresume"
	demoPSKHex      = "73656372657450534b2d64746c73726573756d65" // "secretPSK-dtlsresume"
	defaultAddr     = "127.0.0.1:5684"
)

// securityFlags are the flags listen and dial share.
type securityFlags struct {
	addr, psk, cert, key, ca, suites, serverName string
	insecure, allowShortPSK, rpk                 bool
	peerKeys                                     pemFiles
	resumption, clientStateKey, keyLog           string
	storeSpec, storeKey, metricsAddr             string
	mtu, cid                                     int
	// restartStore is where a server saves its connections on SIGTERM and
	// loads them at start: the persistent session store, nil for memory.
	restartStore        dtls.SessionStore
	retransmit, timeout time.Duration
	limits              limitFlags
}

// limitFlags are a server's per-peer resource limits (dtls.Config's Max…
// fields); zero keeps the library's default.
type limitFlags struct {
	conns, handshakes, handshakesPerIP, handshakeMemory, inboundBytes, backlog int
	cookieLifetime                                                             time.Duration
}

func (f *limitFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.conns, "max-conns", dtls.DefaultMaxConnections, "most associations (connections and handshakes) at once")
	fs.IntVar(&f.handshakes, "max-handshakes", dtls.DefaultMaxHandshakes, "most handshakes running at once")
	fs.IntVar(&f.handshakesPerIP, "max-handshakes-per-ip", dtls.DefaultMaxHandshakesPerIP, "most handshakes running at once from one IP address")
	fs.IntVar(&f.handshakeMemory, "max-handshake-memory", dtls.DefaultMaxHandshakeMemory, "bytes of handshake fragments one handshake may hold (4096 at most before a cookie)")
	fs.IntVar(&f.inboundBytes, "max-inbound-bytes", dtls.DefaultMaxInboundBytes, "bytes of received datagrams one connection queues before they are read")
	fs.IntVar(&f.backlog, "accept-backlog", dtls.DefaultAcceptBacklog, "completed connections waiting to be accepted; more are closed")
	fs.DurationVar(&f.cookieLifetime, "cookie-lifetime", dtls.DefaultCookieLifetime, "how long a HelloVerifyRequest cookie stays valid")
}

func (f *limitFlags) apply(cfg *dtls.Config) error {
	for name, v := range map[string]int{"--max-conns": f.conns, "--max-handshakes": f.handshakes,
		"--max-handshakes-per-ip": f.handshakesPerIP, "--max-handshake-memory": f.handshakeMemory,
		"--max-inbound-bytes": f.inboundBytes, "--accept-backlog": f.backlog} {
		if v <= 0 {
			return usagef("%s %d: must be positive", name, v)
		}
	}
	if f.cookieLifetime <= 0 {
		return usagef("--cookie-lifetime %v: must be positive", f.cookieLifetime)
	}
	cfg.MaxConnections, cfg.MaxHandshakes, cfg.MaxHandshakesPerIP = f.conns, f.handshakes, f.handshakesPerIP
	cfg.MaxHandshakeMemory, cfg.MaxInboundBytes, cfg.AcceptBacklog = f.handshakeMemory, f.inboundBytes, f.backlog
	cfg.CookieLifetime = f.cookieLifetime
	return nil
}

func (s *securityFlags) register(fs *flag.FlagSet, client bool) {
	s.registerAddr(fs, client, defaultAddr)
	s.registerSecurity(fs, client)
}

func (s *securityFlags) registerAddr(fs *flag.FlagSet, client bool, def string) {
	fs.StringVar(&s.addr, "addr", def, "UDP address HOST:PORT to "+map[bool]string{true: "dial", false: "listen on"}[client])
}

// registerSecurity adds the credential, suite, timer and resumption flags.
func (s *securityFlags) registerSecurity(fs *flag.FlagSet, client bool) {
	fs.StringVar(&s.psk, "psk", "", "pre-shared key as IDENTITY:HEXKEY")
	fs.StringVar(&s.suites, "suites", "", "comma-separated cipher suites (OpenSSL or IANA names); default all that the credentials allow")
	fs.IntVar(&s.mtu, "mtu", 0, "largest UDP payload to send (default 1232)")
	fs.IntVar(&s.cid, "cid", -1, "negotiate RFC 9146 connection IDs, asking for a CID of N bytes (0: send the peer's but need none; default: no CIDs)")
	fs.DurationVar(&s.retransmit, "retransmit", 0, "initial retransmission timer (default 1s; RFC 7925 suggests 9s)")
	if client {
		fs.StringVar(&s.ca, "ca", "", "PEM file of CA certificates that verify the server")
		fs.BoolVar(&s.insecure, "insecure", false, "accept any server certificate (testing only)")
		fs.StringVar(&s.serverName, "server-name", "", "name the server certificate must carry (default: the dialled host)")
		fs.DurationVar(&s.timeout, "timeout", 10*time.Second, "handshake and reply timeout")
	}
	if client {
		fs.StringVar(&s.resumption, "resumption", "session_ticket,session_id", "ordered resumption mechanisms to offer: none, session_id, session_ticket, client_state")
	} else {
		fs.StringVar(&s.resumption, "resumption", "client_state,session_ticket,session_id", "resumption mechanisms to allow: none, session_id, session_ticket, client_state")
	}
	if client {
		fs.StringVar(&s.clientStateKey, "client-state-key", "", "16-byte hex key for client_state tickets (default: derived from the PSK or --key)")
		fs.BoolVar(&s.allowShortPSK, "allow-short-psk", false, "derive the client_state key from a PSK shorter than 16 bytes (its handle lets an eavesdropper test guesses of it offline)")
	}
	fs.StringVar(&s.keyLog, "keylog", "", "append each connection's master secret to FILE in the NSS key log format, for Wireshark (default $SSLKEYLOGFILE; debugging only)")
	fs.StringVar(&s.cert, "cert", "", "PEM certificate chain (ECDSA P-256 or P-384)")
	fs.StringVar(&s.key, "key", "", "PEM private key for --cert (alone with --rpk)")
	fs.BoolVar(&s.rpk, "rpk", false, "present the public key of --key as an RFC 7250 raw public key when the peer accepts one")
	fs.Var(&s.peerKeys, "peer-key", "PEM public key (or certificate) of a peer whose raw public key to accept; repeatable"+
		map[bool]string{true: "", false: " (a server then requires one from every client)"}[client])
}

// pemFiles is a repeatable flag naming PEM files.
type pemFiles []string

func (p *pemFiles) String() string     { return strings.Join(*p, ",") }
func (p *pemFiles) Set(v string) error { *p = append(*p, v); return nil }

// loadPeerKeys reads each --peer-key file into DER SubjectPublicKeyInfos:
// a PUBLIC KEY block as it is, a CERTIFICATE block by its key.
func loadPeerKeys(files []string) ([][]byte, error) {
	var keys [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usagef("--peer-key: %v", err)
		}
		n := len(keys)
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			switch block.Type {
			case "PUBLIC KEY":
				if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
					return nil, usagef("--peer-key %s: %v", f, err)
				}
				keys = append(keys, block.Bytes)
			case "CERTIFICATE":
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					return nil, usagef("--peer-key %s: %v", f, err)
				}
				keys = append(keys, cert.RawSubjectPublicKeyInfo)
			}
		}
		if len(keys) == n {
			return nil, usagef("--peer-key %s: no PEM PUBLIC KEY or CERTIFICATE in it", f)
		}
	}
	return keys, nil
}

// loadKey reads a PEM private key alone (SEC 1 or PKCS #8), for --rpk
// without --cert.
func loadKey(keyFile string) (tls.Certificate, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, usagef("--key: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return tls.Certificate{}, usagef("--key %s: no PEM block in it", keyFile)
	}
	var k any
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return tls.Certificate{}, usagef("--key %s: %v", keyFile, err)
	}
	return tls.Certificate{PrivateKey: k}, nil
}

// parsePSK reads IDENTITY:HEXKEY.
func parsePSK(v string) (identity string, key []byte, err error) {
	id, hexKey, ok := strings.Cut(v, ":")
	if !ok || id == "" || hexKey == "" {
		return "", nil, usagef("--psk %q: want IDENTITY:HEXKEY", v)
	}
	key, err = hex.DecodeString(hexKey)
	if err != nil || len(key) == 0 {
		return "", nil, usagef("--psk: key is not hex: %q", hexKey)
	}
	return id, key, nil
}

// loadKeyPair reads --cert and --key, or --key alone when keyOnly (--rpk
// without --cert); the key must be ECDSA on P-256 or P-384.
func loadKeyPair(certFile, keyFile string, keyOnly bool) (tls.Certificate, error) {
	var cert tls.Certificate
	var err error
	switch {
	case keyOnly:
		cert, err = loadKey(keyFile)
	case certFile == "" || keyFile == "":
		return tls.Certificate{}, usagef("--cert and --key go together")
	default:
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			err = usagef("loading --cert %s / --key %s: %v", certFile, keyFile, err)
		}
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	k, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || (k.Curve != elliptic.P256() && k.Curve != elliptic.P384()) {
		return tls.Certificate{}, usagef("--key %s: want an ECDSA P-256 or P-384 key", keyFile)
	}
	return cert, nil
}

// config builds a dtls.Config from the flags.
func (s *securityFlags) config(client bool) (*dtls.Config, error) {
	cfg := &dtls.Config{MTU: s.mtu, RetransmitInterval: s.retransmit}
	if s.mtu != 0 && s.mtu < 256 {
		return nil, usagef("--mtu %d: at least 256", s.mtu)
	}
	if err := s.openKeyLog(cfg); err != nil {
		return nil, err
	}
	switch {
	case s.cid > 255:
		return nil, usagef("--cid %d: at most 255", s.cid)
	case s.cid == 0:
		cfg.ConnectionIDGenerator = dtls.OnlySendCIDGenerator()
	case s.cid > 0:
		cfg.ConnectionIDGenerator = dtls.RandomCIDGenerator(s.cid)
	}
	if s.suites != "" {
		ids, err := dtls.ParseCipherSuites(s.suites)
		if err != nil {
			return nil, usagef("--suites: %v", err)
		}
		cfg.CipherSuites = ids
	}
	if s.psk != "" {
		id, key, err := parsePSK(s.psk)
		if err != nil {
			return nil, err
		}
		if client {
			cfg.PSKIdentityHint = []byte(id)
			cfg.PSK = func([]byte) ([]byte, error) { return key, nil }
		} else {
			cfg.PSK = func(got []byte) ([]byte, error) {
				if string(got) != id {
					return nil, fmt.Errorf("unknown PSK identity")
				}
				return key, nil
			}
		}
	}
	switch {
	case s.rpk && s.key == "":
		return nil, usagef("--rpk needs --key")
	case s.cert != "" || s.key != "":
		cert, err := loadKeyPair(s.cert, s.key, s.rpk && s.cert == "")
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	cfg.RawPublicKey = s.rpk
	if len(s.peerKeys) > 0 {
		keys, err := loadPeerKeys(s.peerKeys)
		if err != nil {
			return nil, err
		}
		cfg.PeerPublicKeys = keys
		if !client {
			cfg.ClientAuth = dtls.RequireAnyClientCert
		}
	}
	types, err := negotiation.ParseList(s.resumption)
	if err != nil {
		return nil, usagef("--resumption: %v", err)
	}
	allowed := negotiation.Policy(types)
	cfg.Resumption = types
	cfg.SessionTicketsDisabled = !allowed.Allows(negotiation.SessionTicket)
	if s.clientStateKey != "" {
		if !client {
			return nil, usagef("--client-state-key is a dial flag")
		}
		key, err := hex.DecodeString(s.clientStateKey)
		if err != nil || len(key) != 16 {
			return nil, usagef("--client-state-key: want 32 hex digits (16 bytes)")
		}
		cfg.ClientStateKey = key
	}
	if client {
		if s.ca != "" {
			pem, err := os.ReadFile(s.ca)
			if err != nil {
				return nil, usagef("--ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usagef("--ca %s: no PEM certificate in it", s.ca)
			}
			cfg.RootCAs = pool
		}
		cfg.InsecureSkipVerify = s.insecure
		cfg.AllowShortClientStatePSK = s.allowShortPSK
		cfg.ServerName = s.serverName
		cfg.HandshakeTimeout = s.timeout
		if cfg.PSK == nil && cfg.RootCAs == nil && !cfg.InsecureSkipVerify && cfg.PeerPublicKeys == nil {
			return nil, usagef("give --psk, or --ca or --peer-key (or --insecure) for certificate suites")
		}
	}
	return cfg, nil
}

// registerServer adds the server's store and metrics flags.
func (s *securityFlags) registerServer(fs *flag.FlagSet) {
	fs.StringVar(&s.storeSpec, "store", "memory", storeFlagUsage)
	fs.StringVar(&s.storeKey, "store-key", "", storeKeyFlagUsage)
	registerStoreInsecure(fs)
	fs.StringVar(&s.metricsAddr, "metrics", "", "serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9100)")
	s.limits.register(fs)
}

// setupServer opens the session store and ticket keys, installs metrics
// and a handshake log line, and serves the metrics when asked. The returned
// function releases all of it; call it after the listener is closed.
func (s *securityFlags) setupServer(cfg *dtls.Config, logger *slog.Logger, stdout io.Writer) (func(), error) {
	if err := s.limits.apply(cfg); err != nil {
		return nil, err
	}
	key, err := parseStoreKey(s.storeKey)
	if err != nil {
		return nil, err
	}
	st, ring, closeStore, err := openStore(s.storeSpec, key, logger)
	if err != nil {
		return nil, err
	}
	if storeBackendName(s.storeSpec) != "memory" {
		s.restartStore = st
	}
	m := metrics.New(nil)
	policy := negotiation.Policy(cfg.Resumption)
	if policy.Allows(negotiation.SessionID) || policy.Allows(negotiation.ClientState) {
		cfg.SessionStore = m.WrapStore(st, storeBackendName(s.storeSpec))
	}
	if !cfg.SessionTicketsDisabled {
		cfg.TicketKeys = ring
		m.WatchKeyRing(ring)
	}
	cfg.HandshakeObserver = func(st dtls.ConnectionState, err error) {
		m.Observe(st, err)
		if err != nil {
			logHandshakeFailure(logger, st, err)
			return
		}
		logger.Info("handshake complete", append(peerAttrs(st), "suite", st.CipherSuite.String(), "resumed", st.Resumed,
			"resumption", st.Resumption.String(), "datagrams_in", st.HandshakeDatagramsReceived, "datagrams_out", st.HandshakeDatagramsSent)...)
	}
	cfg.LimitObserver = m.ObserveLimit
	shutdown := func(context.Context) error { return nil }
	if s.metricsAddr != "" {
		addr, sd, err := m.Serve(s.metricsAddr, logger)
		if err != nil {
			_ = closeStore()
			return nil, usagef("--metrics %s: %v", s.metricsAddr, err)
		}
		shutdown = sd
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", addr)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = shutdown(ctx)
		if err := closeStore(); err != nil {
			logger.Warn("closing the session store", "err", err)
		}
	}, nil
}

// openKeyLog points Config.KeyLogWriter at --keylog, or at $SSLKEYLOGFILE
// as browsers and curl do, appending; the file is created with mode 0600
// since it holds every logged session's secrets. It stays open for the
// process's life.
func (s *securityFlags) openKeyLog(cfg *dtls.Config) error {
	path := s.keyLog
	if path == "" {
		path = os.Getenv("SSLKEYLOGFILE")
	}
	if path == "" {
		return nil
	}
	// Appending, as other key log writers do, but never through a symlink,
	// and never to a file others can read.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return usagef("--keylog: %v", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		f.Close()
		return usagef("--keylog %s: not a regular file readable by its owner only (mode 0600)", path)
	}
	cfg.KeyLogWriter = f
	fmt.Fprintf(os.Stderr, "dtlsresume: writing session secrets to the key log %s (debugging only)\n", path)
	return nil
}

// peerAttrs are the log attributes naming who the peer claimed to be: its
// PSK identity, certificate subject, or the SHA-256 fingerprint of its raw
// public key (what `openssl pkey -pubin -outform DER | sha256sum` prints).
func peerAttrs(st dtls.ConnectionState) []any {
	switch {
	case st.PSKIdentity != nil:
		return []any{"identity", string(st.PSKIdentity)}
	case len(st.PeerCertificates) > 0:
		return []any{"subject", st.PeerCertificates[0].Subject.String()}
	case st.PeerPublicKey != nil:
		sum := sha256.Sum256(st.PeerPublicKey)
		return []any{"peer_key", hex.EncodeToString(sum[:])}
	}
	return nil
}

// logHandshakeFailure logs a failed handshake once, at INFO: the peer, who
// it claimed to be (PSK identity or certificate subject, never key
// material), the stage, a bounded reason and the cause.
func logHandshakeFailure(logger *slog.Logger, st dtls.ConnectionState, err error) {
	attrs := []any{}
	var he *dtls.HandshakeError
	if errors.As(err, &he) {
		attrs = append(attrs, "peer", he.Peer, "stage", he.Stage)
	}
	attrs = append(attrs, peerAttrs(st)...)
	reason, alert := dtls.ReasonOf(err)
	attrs = append(attrs, "reason", string(reason))
	if alert != "" {
		attrs = append(attrs, "alert", alert)
	}
	if he != nil {
		err = he.Err
	}
	logger.Info("handshake failed", append(attrs, "err", err)...)
}

// traceTo prints each handshake message as OpenSSL's s_client -msg does:
// ">>> ClientHello, 134 bytes, epoch 0" for one sent, "<<<" for one
// received.
func traceTo(w io.Writer) func(dtls.TraceEvent) {
	return func(ev dtls.TraceEvent) {
		dir, again := "<<<", ""
		if ev.Sent {
			dir = ">>>"
		}
		if ev.Retransmission {
			again = " (retransmission)"
		}
		fmt.Fprintf(w, "%s %s, %d bytes, epoch %d%s\n", dir, ev.Message, ev.Length, ev.Epoch, again)
	}
}
