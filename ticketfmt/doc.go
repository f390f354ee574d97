// Package ticketfmt seals DTLS 1.2 session state into tickets and opens them
// again. That is its one job: it does no I/O, keeps no sessions and knows
// nothing of handshakes.
//
// One format serves two purposes (docs/decisions.md 14): the
// RFC 5077 tickets a server issues to its clients (label [LabelServer]) and
// the client_state tickets a client seals for a server to park on its behalf
// (label [LabelClient]). Only the issuer ever opens a ticket, so the format is
// private to this package and interop-neutral.
//
// A ticket is a CcmTicket: the 16-byte name of the sealing key, a random
// 12-byte nonce and the AEAD_AES_128_CCM sealing (16-byte tag) of a
// StatePlaintext, with key_name ‖ label as additional data. The StatePlaintext
// is RFC 5077's recommended one (protocol version, cipher suite, compression,
// master secret, ClientIdentity, timestamp) extended with a format version,
// the extended master secret flag, the session's creation time, a lifetime,
// the peer certificate's expiry, the server name and the resumption type.
// RFC 5077's ClientIdentity is called [PeerIdentity] here because in a client
// ticket it names the server, and it gains a raw_public_key(255) case.
//
// The building blocks are [State] (the StatePlaintext codec), [Key] (seal and
// open under one key), and [KeyRing] (a server's rotating set of keys). A
// ring's keys can be exported and imported (a key may carry a NotBefore in
// the future: it opens tickets at once and seals from then on), kept across
// restarts (KeyRingConfig.Keys, OnChange), and shared by a cluster: a
// Managed ring generates no key of its own and follows a schedule given by
// SyncKeys, so every server seals with the same key at the same time
// (package store publishes the schedule through Redis).
// [DeriveClientKey] and [ClientHandle] give a client its ticket key and its
// public handle from the credential it already holds.
package ticketfmt
