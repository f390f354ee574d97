package store

import (
	"context"
	"errors"
	"time"
)

// Store keeps records as opaque bytes under opaque keys, each with a
// lifetime. Every backend of this package implements it, and it has the
// method set of dtls.SessionStore, so any Store can back a server's session
// cache or its client_state records.
//
// The contract every backend keeps:
//   - Get returns a copy of the value stored under key, or an error wrapping
//     [ErrNotFound] when there is none or it has expired. A record expires at
//     the instant Put's time plus ttl: from that instant on it is not found.
//   - Put stores a copy of value under a copy of key for ttl, replacing any
//     record under the same key (and its lifetime). ttl must be positive
//     ([ErrInvalidTTL]): a record without a lifetime is a bug, never a
//     default. A record the store can never hold is refused with an error
//     wrapping [ErrTooLarge], and any record already under key is kept.
//   - Delete removes the record under key; deleting an absent key is not an
//     error.
//   - The caller may reuse key and value buffers after a call returns, and
//     may modify a slice Get returned.
//   - Each method returns ctx.Err() without touching the store when ctx is
//     already done, and is safe for concurrent use.
//   - A store is bounded, and may drop any record before it expires (to stay
//     within its bounds, or because it restarted); callers treat a miss as
//     the normal case.
type Store interface {
	Get(ctx context.Context, key []byte) ([]byte, error)
	Put(ctx context.Context, key, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key []byte) error
}

var (
	// ErrNotFound is wrapped by Get's error when the key has no record or its
	// record has expired.
	ErrNotFound = errors.New("store: not found")

	// ErrInvalidTTL is returned by Put when ttl is zero or negative.
	ErrInvalidTTL = errors.New("store: Put: ttl must be positive")

	// ErrTooLarge is wrapped by Put's error when a record is larger than the
	// store will ever hold.
	ErrTooLarge = errors.New("store: record too large")
)
