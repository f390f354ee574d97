package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// storeKeyEnv names the environment variable that holds the operator's
// store key (64 hex digits) when --store-key is not given.
const storeKeyEnv = "DTLSRESUME_STORE_KEY"

// storeFlagUsage documents --store for the flag sets.
const storeFlagUsage = "where the server keeps sessions and ticket keys: memory[:CAPACITY] (CAPACITY records, default " +
	"10000; a million take 180-340 MB), file:PATH (survives a restart), or redis://[:PASSWORD@]HOST:PORT[/DB] " +
	"(shared by a cluster of servers); file: and redis:// need --store-key or $" + storeKeyEnv + " (redis:// runs without only with --store-insecure)"

// memoryBytesPerRecord scales a memory store's byte bound with its
// capacity: keys and values of memory:CAPACITY may take CAPACITY times this
// (or DefaultMemoryMaxBytes, if that is more). A session-ID record is ~130
// bytes and a client_state record ~270, so the record count binds first;
// sessions of certificate clients, which carry their certificates, are
// larger.
const memoryBytesPerRecord = 512

// maxMemoryCapacity bounds memory:CAPACITY: a billion records (180-340 GB
// of heap) is beyond any server this runs on, so more is a typo.
const maxMemoryCapacity = 1_000_000_000

// parseMemorySpec returns the configuration of the memory store that a
// --store value names: "" or "memory" (the defaults) or "memory:CAPACITY"
// (CAPACITY records, decimal, 1 to maxMemoryCapacity, and MaxBytes scaled
// with it). ok is false for a value that names another backend.
func parseMemorySpec(spec string) (cfg store.MemoryConfig, ok bool, err error) {
	if spec == "" || spec == "memory" {
		return cfg, true, nil
	}
	v, found := strings.CutPrefix(spec, "memory:")
	if !found {
		return cfg, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64) // digits only: no sign, no underscores
	if err != nil || n < 1 || n > maxMemoryCapacity {
		return cfg, true, usagef("--store %q: CAPACITY must be a number of records from 1 to %d, as in memory:1000000", store.RedactURL(spec), maxMemoryCapacity)
	}
	maxBytes := math.MaxInt // where int has 32 bits and CAPACITY×512 does not fit
	if n <= math.MaxInt/memoryBytesPerRecord {
		maxBytes = max(int(n)*memoryBytesPerRecord, store.DefaultMemoryMaxBytes)
	}
	return store.MemoryConfig{Capacity: int(n), MaxBytes: maxBytes}, true, nil
}

// storeKeyFlagUsage documents --store-key.
const storeKeyFlagUsage = "operator key for the store, 64 hex digits (32 bytes), the same on every server sharing it; default $" +
	storeKeyEnv + ". Seals (AES-256-GCM) the master secrets and ticket keys that file: and redis:// stores keep; " +
	"file: needs it, redis:// refuses to start without it unless --store-insecure"

// storeInsecureFlagUsage documents --store-insecure.
const storeInsecureFlagUsage = "let a redis:// store start without --store-key, keeping master secrets and ticket keys in the clear: " +
	"anyone who can read that Redis can then decrypt sessions, and anyone who can write it can forge tickets for any identity (logged as a warning)"

// storeInsecure is --store-insecure of the process's server command. It
// lives here rather than in securityFlags, whose setupServer passes the
// store flags to openStore; a process runs one server.
var storeInsecure atomic.Bool

// insecureFlag is the flag.Value of --store-insecure (a bool flag).
type insecureFlag struct{}

func (insecureFlag) String() string   { return strconv.FormatBool(storeInsecure.Load()) }
func (insecureFlag) IsBoolFlag() bool { return true }
func (insecureFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	storeInsecure.Store(b)
	return nil
}

// registerStoreInsecure adds --store-insecure to a server's flags
// (securityFlags.registerServer).
func registerStoreInsecure(fs *flag.FlagSet) {
	storeInsecure.Store(false)
	fs.Var(insecureFlag{}, "store-insecure", storeInsecureFlagUsage)
}

// parseStoreKey decodes a --store-key value (64 hex digits); empty gives
// nil.
func parseStoreKey(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) != store.KeySize {
		return nil, usagef("store key: want %d hex digits (%d bytes)", 2*store.KeySize, store.KeySize)
	}
	return key, nil
}

// storeSpec is a parsed --store value.
type storeSpec struct {
	backend string             // "memory", "file" or "redis" (storeBackendName)
	memory  store.MemoryConfig // memory
	path    string             // file
	url     string             // redis
}

// parseStoreSpec checks a --store value without opening anything. Its
// errors are usage errors, and never quote a URL's user name or password
// (store.RedactURL).
func parseStoreSpec(spec string) (storeSpec, error) {
	if cfg, ok, err := parseMemorySpec(spec); ok {
		return storeSpec{backend: "memory", memory: cfg}, err
	}
	switch {
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return storeSpec{}, usagef("--store file:PATH: empty path")
		}
		return storeSpec{backend: "file", path: path}, nil
	case strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://"):
		if err := store.CheckRedisURL(spec); err != nil {
			return storeSpec{}, usagef("--store %s: %v", store.RedactURL(spec), err)
		}
		return storeSpec{backend: "redis", url: spec}, nil
	}
	return storeSpec{}, usagef("--store %q: want memory[:CAPACITY], file:PATH or redis://HOST:PORT[/DB]", store.RedactURL(spec))
}

// storeSealing decides, for every backend, whether the store may start and
// how it keeps master secrets and ticket keys (docs/decisions.md 46): the
// one place that does. A backend that keeps them outside the process
// (file:, redis://) seals them under the operator's key when there is one;
// without a key a redis:// store starts only if the operator chose
// --store-insecure, and a file: store (always sealed) not at all. The
// memory store keeps nothing at rest. sealed reports whether the store is
// to seal under key.
func storeSealing(sp storeSpec, key []byte, insecure bool) (sealed bool, err error) {
	switch {
	case sp.backend == "memory":
		return false, nil
	case key != nil:
		return true, nil
	case sp.backend == "file":
		return false, usagef("--store file:%s needs an operator key: --store-key or $%s (64 hex digits); "+
			"a file store is always sealed, --store-insecure does not apply", sp.path, storeKeyEnv)
	case insecure:
		return false, nil
	}
	return false, usagef("--store %s would keep master secrets and ticket keys in the clear, where anyone who can write to it "+
		"can forge tickets: give --store-key or $%s (64 hex digits, the same on every server) to seal them, "+
		"or --store-insecure to run without", store.RedactURL(sp.url), storeKeyEnv)
}

// logStoreSealing says at start how the store keeps secrets: sealed under
// the key (INFO), or in the clear by the operator's choice (WARN).
func logStoreSealing(logger *slog.Logger, sp storeSpec, sealed, insecure bool, attrs ...any) {
	switch {
	case sealed:
		logger.Info("session store: "+sp.backend+", records and ticket keys sealed under the store key (AES-256-GCM)", attrs...)
		if insecure {
			logger.Warn("--store-insecure ignored: a store key is given, and the store is sealed under it")
		}
	case sp.backend != "memory":
		logger.Warn("session store: "+sp.backend+" IN THE CLEAR (--store-insecure): anyone who can read it learns every "+
			"session's master secret and the ticket keys, anyone who can write it can forge tickets for any identity", attrs...)
	}
}

// openStore opens the session store and the ticket key ring that spec
// names, with key (nil reads $DTLSRESUME_STORE_KEY) and --store-insecure as
// given on the command line. See openStoreWith.
func openStore(spec string, key []byte, logger *slog.Logger) (dtls.SessionStore, *ticketfmt.KeyRing, func() error, error) {
	return openStoreWith(spec, key, storeInsecure.Load(), logger)
}

// openStoreWith opens the session store and the ticket key ring that spec
// names:
//
//   - "" or "memory": a bounded in-memory store and a ring of the process's
//     own; both are lost on restart. "memory:CAPACITY" bounds the store at
//     CAPACITY records instead of store.DefaultMemoryCapacity (see
//     parseMemorySpec).
//   - "file:PATH": the file store at PATH (created if missing), sealed
//     under key, and a ticket key ring kept in it, so that sessions,
//     client_state records and tickets all resume after a restart.
//   - "redis://HOST:PORT[/DB]" (or rediss://): a Redis store shared by every
//     server using the same Redis, and a ticket key ring synchronised
//     through it, so that a client resumes on any of them; records and
//     ticket keys are sealed under key, or, with insecure and no key, kept
//     in the clear. A Redis that is down is not an error here: handshakes
//     are full until it answers.
//
// key is the operator's 32-byte store key (from --store-key, see
// parseStoreKey); nil reads it from $DTLSRESUME_STORE_KEY. storeSealing
// decides whether a store may start without one. The returned close
// function stops the background work and closes the store; call it after
// the listener is closed. Errors are usage errors (a bad spec or key, a
// missing key) or a file that cannot be opened; none quotes a Redis
// password.
func openStoreWith(spec string, key []byte, insecure bool, logger *slog.Logger) (dtls.SessionStore, *ticketfmt.KeyRing, func() error, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if key == nil {
		k, err := parseStoreKey(os.Getenv(storeKeyEnv))
		if err != nil {
			return nil, nil, nil, usagef("$%s: %v", storeKeyEnv, err)
		}
		key = k
	}
	if key != nil && len(key) != store.KeySize {
		return nil, nil, nil, usagef("store key: want %d bytes, got %d", store.KeySize, len(key))
	}
	sp, err := parseStoreSpec(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	sealed, err := storeSealing(sp, key, insecure)
	if err != nil {
		return nil, nil, nil, err
	}
	switch sp.backend {
	case "memory":
		ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{})
		if err != nil {
			return nil, nil, nil, err
		}
		if sp.memory.Capacity > 0 {
			logger.Info("session store: memory", "capacity", sp.memory.Capacity, "max_bytes", sp.memory.MaxBytes)
		}
		return store.NewMemory(sp.memory), ring, func() error { return nil }, nil

	case "file":
		f, err := store.NewFile(sp.path, key, store.FileConfig{Logger: logger})
		if err != nil {
			return nil, nil, nil, err
		}
		pr, err := store.FileKeyRing(f, ticketfmt.KeyRingConfig{}, logger)
		if err != nil {
			f.Close()
			return nil, nil, nil, err
		}
		closeFn := func() error {
			return errors.Join(pr.Close(), f.Close())
		}
		logStoreSealing(logger, sp, sealed, insecure, "path", sp.path, "sessions", f.Len())
		return f, pr.Ring, closeFn, nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var sealKey []byte
	if sealed {
		sealKey = key
	}
	r, err := store.NewRedis(ctx, sp.url, store.RedisConfig{Key: sealKey, Logger: logger})
	if err != nil {
		return nil, nil, nil, usagef("--store %s: %v", store.RedactURL(sp.url), err)
	}
	ring, ks, err := store.SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{}, store.KeySyncConfig{Logger: logger})
	if err != nil {
		r.Close()
		return nil, nil, nil, err
	}
	closeFn := func() error {
		ks.Stop()
		return r.Close()
	}
	logStoreSealing(logger, sp, sealed, insecure, "url", store.RedactURL(sp.url))
	return r, ring, closeFn, nil
}

// storeBackendName names the backend of a --store value for metrics
// labels: memory, file or redis.
func storeBackendName(spec string) string {
	switch {
	case strings.HasPrefix(spec, "file:"):
		return "file"
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		return "redis"
	}
	return "memory"
}
