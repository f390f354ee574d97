package dtls

import (
	"context"
	"errors"
)

// The stateless first look at a ClientHello (RFC 6347 §4.2.1): parse it,
// check its cookie, or answer with a HelloVerifyRequest built from the hello
// alone. Nothing is kept per peer here.

// screenClientHello is the stateless first look at a datagram from an
// address without a connection (RFC 6347 §4.2.1). It returns the ClientHello
// it carries, whether its cookie is valid, and the record it came in; nil
// when the datagram is not a whole ClientHello, which is dropped. Nothing is
// allocated per peer here.
func screenClientHello(d []byte, addr string, jar *cookieJar) (*clientHelloMsg, handshakeMsg, bool) {
	recs, _ := parseRecords(d)
	if len(recs) == 0 || recs[0].contentType != recordHandshake || recs[0].epoch != 0 {
		return nil, handshakeMsg{}, false
	}
	frags, _ := parseHandshakeFragments(recs[0].fragment)
	if len(frags) == 0 {
		return nil, handshakeMsg{}, false
	}
	f := frags[0]
	if f.msgType != typeClientHello || f.offset != 0 || len(f.data) != int(f.length) {
		return nil, handshakeMsg{}, false
	}
	hello := &clientHelloMsg{}
	if err := hello.unmarshal(f.data); err != nil {
		return nil, handshakeMsg{}, false
	}
	// The body outlives d, which the listener reuses for its next read.
	body := append([]byte(nil), f.data...)
	return hello, handshakeMsg{typ: f.msgType, seq: f.seq, body: body, recordSeq: recs[0].seq}, jar.valid(addr, hello)
}

// helloVerifyRequest builds the datagram that asks for a cookie. It reuses
// the ClientHello's record and message sequence numbers, so the server keeps
// no counter per peer.
func helloVerifyRequest(addr string, hello *clientHelloMsg, msg handshakeMsg, jar *cookieJar) []byte {
	hvr := &helloVerifyRequestMsg{vers: versionDTLS10, cookie: jar.make(addr, hello)}
	body, _ := hvr.marshal()
	payload := marshalHandshakeHeader(nil, typeHelloVerifyRequest, len(body), msg.seq, 0, len(body))
	payload = append(payload, body...)
	out := marshalRecordHeader(nil, recordHandshake, versionDTLS10, 0, msg.recordSeq, len(payload))
	return append(out, payload...)
}

// firstHello is a ClientHello the listener screened.
type firstHello struct {
	info *clientHelloInfo
	msg  handshakeMsg
	size int // bytes of the datagram that carried it
	// verified says it carried a valid cookie: the peer is reachable at
	// its address.
	verified bool
	// res is the listener's resumption lookup, with the reply it
	// prepared, when resChecked, so that the handshake does not repeat it.
	res        *resumption
	resChecked bool
}

// awaitCookie runs the cookie exchange for a Conn made by Server, which has
// no listener to do it.
func (c *Conn) awaitCookie(ctx context.Context) error {
	jar, err := newCookieJar(c.cfg.cookieLifetime(), c.cfg.now)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	for {
		select {
		case <-c.in.ready:
			for in, ok := c.in.pop(); ok; in, ok = c.in.pop() {
				d := in.d
				c.stats.datagramsReceived.Add(1)
				c.stats.bytesReceived.Add(int64(len(d)))
				hello, msg, cookieOK := screenClientHello(d, c.raddr.String(), jar)
				if hello == nil {
					continue
				}
				first := &firstHello{info: parseClientHelloInfo(c.cfg, hello), msg: msg, size: len(d), verified: cookieOK}
				if cookieOK || c.cfg.skipCookie(ctx, first) {
					c.first = first
					c.unverified.Store(!cookieOK)
					return nil
				}
				if err := c.writeDatagram(helloVerifyRequest(c.raddr.String(), hello, msg, jar)); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return errHandshakeTimeout
		case <-c.closed:
			return errors.New("dtls: closed before the handshake")
		}
	}
}
