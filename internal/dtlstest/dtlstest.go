// Package dtlstest is the test kit for packages outside dtls that need a
// DTLS peer on loopback: an echo loop over a dtls.Listener. (Tests inside
// package dtls keep their own, since they cannot import a package that
// imports dtls.)
package dtlstest

import (
	"net"

	"github.com/dtlsresume/dtlsresume/dtls"
)

// ServeEcho accepts connections on l until it is closed and echoes every
// datagram on each; accepted, if not nil, is told each peer's address as
// it is accepted.
func ServeEcho(l *dtls.Listener, accepted func(net.Addr)) {
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
// then closes it.
func Echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 2048)
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
