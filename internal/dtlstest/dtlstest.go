// Package dtlstest is the test kit for packages outside dtls that need a
// DTLS peer on loopback: an echo loop over a listener of any stack. (Tests inside
// package dtls keep their own, since they cannot import a package that
// imports dtls.)
package dtlstest

import "net"

// ServeEcho accepts connections on l (ours or another stack's) until it is
// closed and echoes every datagram on each; accepted, if not nil, is told
// each peer's address as it is accepted.
func ServeEcho(l net.Listener, accepted func(net.Addr)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if accepted != nil {
			accepted(c.RemoteAddr())
		}
		go Echo(c)
	}
}

// Echo answers every datagram on c with the same bytes until c fails,
// then closes it. Its buffer holds the largest record plaintext (2^14).
func Echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 1<<14)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}
