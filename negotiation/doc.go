// Package negotiation is the session_resumption_type hello extension: the
// resumption types, the wire codecs of its ClientHello and ServerHello
// payloads, the per-side policy, and the rule by which a server selects a type
// and a client checks the selection.
//
// The extension lets client and server agree, during a handshake, which
// mechanism will resume the session that handshake creates: none, session_id
// (RFC 5246), session_ticket (RFC 5077) or client_state (client-side state
// offloading, draft-hummen-dtls-extended-session-resumption). It was never
// assigned an ExtensionType; DefaultCodepoint is a private-use value (RFC 8447)
// that both peers must agree on.
//
// The package does no I/O and imports nothing else of this module. Decoding
// failures wrap ErrDecode (the engine answers decode_error); a selection the
// client did not offer wraps ErrNotOffered (illegal_parameter).
package negotiation
