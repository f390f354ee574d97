package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
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
	"10000; a million take 180-340 MB), file:PATH (survives a restart; needs --store-key or $" +
	storeKeyEnv + "), or redis://HOST:PORT[/DB] (shared by a cluster of servers)"

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
		return cfg, true, usagef("--store %q: CAPACITY must be a number of records from 1 to %d, as in memory:1000000", spec, maxMemoryCapacity)
	}
	maxBytes := math.MaxInt // where int has 32 bits and CAPACITY×512 does not fit
	if n <= math.MaxInt/memoryBytesPerRecord {
		maxBytes = max(int(n)*memoryBytesPerRecord, store.DefaultMemoryMaxBytes)
	}
	return store.MemoryConfig{Capacity: int(n), MaxBytes: maxBytes}, true, nil
}

// storeKeyFlagUsage documents --store-key.
const storeKeyFlagUsage = "operator key for the store, 64 hex digits (32 bytes); default $" + storeKeyEnv +
	". Encrypts file: stores (required there) and, when given, what redis:// stores hold"

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

// openStore opens the session store and the ticket key ring that spec
// names:
//
//   - "" or "memory": a bounded in-memory store and a ring of the process's
//     own; both are lost on restart. "memory:CAPACITY" bounds the store at
//     CAPACITY records instead of store.DefaultMemoryCapacity (see
//     parseMemorySpec).
//   - "file:PATH": the file store at PATH (created if missing), encrypted
//     under key, and a ticket key ring kept in it, so that sessions,
//     client_state records and tickets all resume after a restart.
//   - "redis://HOST:PORT[/DB]" (or rediss://): a Redis store shared by every
//     server using the same Redis, and a ticket key ring synchronised
//     through it, so that a client resumes on any of them; values are
//     encrypted when a key is given. A Redis that is down is not an error
//     here: handshakes are full until it answers.
//
// key is the operator's 32-byte store key (from --store-key, see
// parseStoreKey); nil reads it from $DTLSRESUME_STORE_KEY. The returned
// close function stops the background work and closes the store; call it
// after the listener is closed. Errors are usage errors (a bad spec or key)
// or a file that cannot be opened.
func openStore(spec string, key []byte, logger *slog.Logger) (dtls.SessionStore, *ticketfmt.KeyRing, func() error, error) {
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
	if cfg, ok, err := parseMemorySpec(spec); ok {
		if err != nil {
			return nil, nil, nil, err
		}
		ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{})
		if err != nil {
			return nil, nil, nil, err
		}
		if cfg.Capacity > 0 {
			logger.Info("session store: memory", "capacity", cfg.Capacity, "max_bytes", cfg.MaxBytes)
		}
		return store.NewMemory(cfg), ring, func() error { return nil }, nil
	}
	switch {

	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return nil, nil, nil, usagef("--store file:PATH: empty path")
		}
		if key == nil {
			return nil, nil, nil, usagef("--store %s needs an operator key: --store-key or $%s (64 hex digits)", spec, storeKeyEnv)
		}
		f, err := store.NewFile(path, key, store.FileConfig{Logger: logger})
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
		logger.Info("session store: file", "path", path, "sessions", f.Len())
		return f, pr.Ring, closeFn, nil

	case strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://"):
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := store.NewRedis(ctx, spec, store.RedisConfig{Key: key, Logger: logger})
		if err != nil {
			return nil, nil, nil, usagef("--store %s: %v", spec, err)
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
		if key == nil {
			logger.Info("session store: redis, values in the clear (give --store-key to encrypt them)", "url", redactURL(spec))
		} else {
			logger.Info("session store: redis, values encrypted", "url", redactURL(spec))
		}
		return r, ring, closeFn, nil
	}
	return nil, nil, nil, usagef("--store %q: want memory[:CAPACITY], file:PATH or redis://HOST:PORT[/DB]", spec)
}

// redactURL hides a password in a Redis URL.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return fmt.Sprintf("%s://***@%s", scheme, rest[at+1:])
	}
	return u
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
