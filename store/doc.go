// Package store keeps a server's resumable state as opaque, expiring records
// behind one interface, [Store]. That is its one job: it knows nothing of DTLS,
// sessions or tickets; the engine encodes what it keeps and decides the key
// (a session ID, a client_state handle) and the lifetime.
//
// Every record has a lifetime (DESIGN.md decision 9: 24 h by default for
// sessions and client_state records), and every store is bounded: losing a
// record, to expiry or to eviction, only costs the peer a full handshake. A
// miss is reported as an error wrapping [ErrNotFound].
//
// The backends are:
//   - [Memory], the default: a bounded LRU in the process, with per-record
//     expiry; lost on restart.
//   - file (survives a restart) and redis (shared by a cluster of servers)
//     are to come, behind the same [Store] interface.
//
// The package imports nothing else of this module; its types satisfy the
// engine's dtls.SessionStore structurally.
package store
