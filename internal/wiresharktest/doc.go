// Package wiresharktest lets tests look at dtlsresume traffic the way a user
// does in Wireshark: it captures loopback traffic with tshark, reads a
// capture back as tshark dissects it (PDML: every field with its name, the
// text Wireshark shows and its raw value), and loads the repository's Lua
// dissector for the session_resumption_type extension,
// tools/wireshark/dtlsresume.lua.
//
// [Tshark] finds the binary: scripts/test.sh installs Debian's tshark, so
// a missing one fails the test unless DTLSRESUME_ALLOW_MISSING_PEERS=1 (see
// internal/peers).
//
// [StartCapture] runs `tshark -i lo -f "udp port N" -w FILE` and returns once
// tshark demonstrably captures: it sends probe datagrams to the port until
// tshark reports one. [Capture.Stop] sends one more probe, waits until tshark
// has seen it (so everything sent before it is in the file), stops tshark
// with SIGINT and returns the file. Capturing on lo needs root or a dumpcap
// with capture capabilities.
//
// [Read] runs `tshark -r FILE -T pdml` with the caller's options (key log,
// Decode As, the dissector) under an empty configuration directory, so a
// user's Wireshark preferences or personal plugins cannot change what a
// test sees, and fails on any Lua error.
//
// [WritePcap] writes hand-made UDP datagrams to a pcap file, so the
// dissector can be tested on payloads no conforming peer sends.
//
// The tshark 4.0 names used here: the key log preference is
// tls.keylog_file (DTLS reads the TLS one), Decode As for the DTLS payload
// is -d dtls.port==PORT,coap, and the (D)TLS extension fields the dissector
// reads are dtls.handshake.type, dtls.handshake.extension.type, .len and
// .data.
package wiresharktest
