// Package handshakebench measures DTLS handshakes over loopback, ours and
// pion/dtls v3's side by side: time, bytes and datagrams on the wire as the
// client sees them. Both `go test -bench` and `dtlsresume bench` use it, so
// the two report the same numbers.
package handshakebench
