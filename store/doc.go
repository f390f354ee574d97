// Package store keeps a server's resumable state as opaque, expiring records
// behind one interface, [Store]: the engine's session cache (session IDs)
// and its client_state records, under keys the engine chooses ("sid/"+ID,
// "csh/"+handle) and lifetimes it sets. It also keeps the server's ticket
// key ring where that must outlive the process or be shared: in the file
// store ([FileKeyRing]) or in Redis ([SharedKeyRing], [SyncKeyRing]).
//
// Every record has a lifetime, which the engine sets (24 h by default for
// sessions and client_state records: dtls.Config.SessionLifetime), and every
// store is bounded: losing a record, to expiry, eviction, a crash or a store
// that is down, only costs the peer a full handshake. A miss is reported as
// an error wrapping [ErrNotFound]; any other error means the store failed,
// which the engine logs and also treats as a miss (it bounds each call, so a
// hung store costs a handshake at most that bound).
//
// The package imports ticketfmt (for the key rings) and internal/atomicfile
// (for the file store's log) and nothing else of this module; its stores
// satisfy the engine's dtls.SessionStore structurally.
//
// # Backends
//
//   - [Memory], the default: a bounded LRU in the process, with per-record
//     expiry; lost on restart. A session costs its key and value plus 50–70
//     bytes (see Measurements).
//   - [File]: survives a restart and a crash; one process per file.
//   - [Redis]: shared by every server process using the same Redis and
//     prefix, with the ticket key ring, so a client resumes on any of them.
//
// # The file store
//
// Format. A 48-byte header (magic "DTLSRSF\x01", a random 16-byte salt, a
// random 8-byte sync marker, and a 16-byte HMAC of those under a key derived
// from the operator's key) and then an append-only log of records, each
//
//	sync(8) ‖ length(4) ‖ nonce(24) ‖ AES-256-GCM(op ‖ seq(8) ‖ key ID(16) ‖ expiry(8) ‖ value) ‖ tag(16)
//
// 85 bytes of overhead per record ([FileRecordOverhead]). Sealing (seal.go):
// HKDF-SHA256 derives from the operator's 32-byte key an encryption key and
// an ID key; a record key is kept only as its key ID, HMAC-SHA256(ID key,
// key)[0:16], so session IDs and handles are never written; each record is
// sealed under its own AES-256 key HMAC-SHA256(enc key, nonce[0:12]) with
// the rest of the random 24-byte nonce as GCM nonce (no 2^32 limit on
// records), and the file's magic and salt as additional data. The key ID,
// operation, sequence number and expiry are inside the authenticated
// plaintext: a record cannot be moved under another key, into another
// file, or have its lifetime extended.
//
// Durability. Put and Delete append a record with one write and fsync it
// before returning; concurrent writes share one fsync (group commit). A
// killed process loses nothing that was acknowledged (the write reached the
// kernel); with [FileConfig].NoSync a power failure may lose the last
// seconds of records. A write that fails (disk full) is cut off again and
// returns an error; the store keeps serving reads from memory and writes
// again when the disk does. Writes waiting for a hung disk are bounded
// ([FileConfig].MaxPendingWrites) and each returns when its context ends.
//
// Loading. At open the log is replayed into a bounded in-memory index (a
// [Memory] keyed by key ID: Get never touches the disk). Expired records
// are dropped. A record that fails to parse or authenticate, or whose
// sequence number does not increase (a replayed copy), is skipped and
// logged, and the loader resynchronises at the next sync marker: a tampered
// or corrupt record is never loaded and costs only itself. A damaged tail
// with no good record after it (a torn last write) is cut off. After
// damage in the middle the log is rewritten without it. Opening fails only
// for a header that does not verify (a wrong operator key, or a damaged
// header) or an I/O error: the operator must act, and nothing is
// overwritten.
//
// Compaction. When the log exceeds [FileConfig].CompactMinBytes and twice
// what its live records need, a background compaction writes the live
// records (least recently used first, so a reload keeps the LRU order
// approximately) and the records written meanwhile to a fresh temporary
// file .PATH.tmp-RANDOM in the same directory (internal/atomicfile: created
// with O_EXCL and mode 0600, so a file or link someone planted is never
// written through) with a fresh salt, fsyncs it, renames it over the log
// and fsyncs the directory: a crash at any point leaves either the old log
// or the new one, and the next open removes a temporary file it left.
//
// Not covered: someone who can write the file can delete records (full
// handshakes) or roll the whole file back to an older copy (its sessions
// come back until they expire); the sessions' secrets stay secret and
// nothing can be forged without the operator's key.
//
// The ticket key ring of a file-backed server is a meta record of the same
// file (never evicted, sealed like the rest): [FileKeyRing] loads it, saves
// a new ring before returning, and saves every change (rotation,
// retirement) in the background within moments.
//
// # The Redis store
//
// Records are Redis strings PREFIX+"s:"+key (or +key ID when sealed) with
// the record's TTL (SET PX): Redis expires them, and its maxmemory policy
// (volatile-lru, say) bounds them.
//
// Secrets at rest (docs/decisions.md 46). With [RedisConfig].Key, values
// (master secrets) and the shared ticket keys are sealed as in the file
// store (seal.go: AES-256-GCM under a per-record key derived from the
// operator's key), each bound to its Redis key or hash field, and record
// keys are key IDs, so Redis, its replicas and its backups hold no secret
// and no session ID. A store with a key never fails open: a record that
// does not authenticate is an error (the engine does a full handshake), and
// a published ticket key that does not authenticate (sealed under another
// key, or written in the clear by someone who can write to Redis but does
// not hold the key) is ignored and left in place, so nobody without the key
// can choose the cluster's ticket key and forge tickets. Without a key
// Redis holds master secrets and ticket keys in the clear: whoever can read
// it decrypts recorded sessions, whoever can write it forges tickets for
// any identity. `dtlsresume serve` and `listen` therefore refuse a redis://
// store without --store-key (or $DTLSRESUME_STORE_KEY) unless the operator
// says --store-insecure, and log which it is. Errors never quote the URL's
// password ([RedactURL]).
//
// Every call
// is bounded by [RedisConfig].Timeout (250 ms by default) on top of the
// caller's context; go-redis dials once per attempt, retries a command once
// (a pooled connection that broke when Redis restarted), and after repeated
// dial failures fails fast until a background dial succeeds, so a Redis
// that is down costs each handshake at most the timeout and resumption
// returns within about a second of Redis returning. go-redis's own log is
// routed to the store's Logger at debug level.
//
// # Shared ticket keys
//
// A cluster shares one key schedule in the Redis hash PREFIX+"ticketkeys":
// one field per key (its name in hex), holding its secret, Created,
// NotBefore (when it starts sealing) and SealUntil. Each server's ring is
// Managed ([ticketfmt.KeyRingConfig].Managed): it generates no key of its
// own and follows the schedule ([ticketfmt.KeyRing.SyncKeys]): it opens the
// tickets of every scheduled key, including keys not yet sealing, and seals
// with the scheduled key whose NotBefore is latest and has come. So all
// rings switch keys at the same instant, and no server seals with a key the
// others do not hold:
//
//   - Every server syncs every Interval (30 s; [KeySyncConfig]), and at
//     once (at most once a second) when a ticket names a key it does not
//     hold.
//   - When the last scheduled key stops sealing within Lead+Interval, the
//     server that wins the lock PREFIX+"ticketkeys:lock" (SET NX PX, released
//     by compare-and-delete) publishes the next key with NotBefore = the
//     last key's SealUntil, and at least now+Lead (Lead = 3×Interval by
//     default), and SealUntil = NotBefore+Rotation. Every server holds the
//     key at least Lead−Interval before it starts sealing; clocks may differ
//     by that much (60 s by default). When the schedule is late (Redis was
//     down), the last key's SealUntil is extended to the new NotBefore, so
//     the schedule has no gap.
//   - Keys are removed from the hash TicketLifetime after they stopped
//     sealing (rings retire them at the same time).
//   - An empty hash (a new cluster, a flushed Redis) gets the syncing
//     ring's current key, active at once. A ring that first reaches Redis
//     after it started demotes its own first key (it opens that key's
//     tickets until they expire, and never seals with it again).
//   - While Redis is down a ring keeps sealing with its current key, past
//     its SealUntil if need be (all rings do the same, with the same key):
//     tickets keep working across the cluster; a ticket sealed past the
//     schedule may expire early on other servers (a full handshake).
//
// # Measurements
//
// go test -run '^$' -bench 'Store|Resumption' ./store, on the 2-core
// development machine, with session-ID records shaped like the engine's
// ("sid/"+32-byte ID, a 96-byte StatePlaintext):
//
//	backend   Get          Put                                  kept per session
//	memory    0.15 µs      0.2 µs                               ~190 B heap
//	file      0.7–1.1 µs   ~220 µs fsynced (~80 µs each with    ~170 B heap + 169 B disk
//	                       8 writers sharing fsyncs), 5 µs not
//	redis     40–70 µs     100–120 µs (loopback)                200 B Redis memory
//
// A million sessions in one memory store (go test -run '^$' -bench
// MemoryMillionSessions ./store; NewMemory with Capacity 1,000,000): a
// session-ID record (36-byte key, 91-byte StatePlaintext) costs 177 B of
// heap, a client_state record ("csh/"+handle, 248-byte ClientStateRecord)
// 337 B: key and value in one allocation rounded up to the allocator's size
// class, a 32-byte slot (recency links, expiry, the record) and 16 bytes of
// index. So a million session_id clients take ~180 MB, a million
// client_state clients ~340 MB. At that size Get takes 0.7–1.1 µs and Put
// (a new session evicting the oldest) 0.4–0.5 µs, most of it cache misses.
// Before records were packed this way they cost 280 B and 416 B.
//
// A complete resumption on loopback takes about 0.25 ms through memory,
// 0.3 ms through the file store and 0.3 (tickets) to 0.5 ms (store lookups)
// through Redis; the engine's own record is 133 bytes for a session ID and
// 258 for a client_state record.
package store
