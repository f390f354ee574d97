package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/internal/pionstore"
	"github.com/dtlsresume/dtlsresume/store"
	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
)

// PeerConfig configures the pion/dtls v3 servers that stand beside ours.
type PeerConfig struct {
	// Addr is the UDP address to serve on.
	Addr *net.UDPAddr
	// PSKIdentity and PSK are the only credentials accepted.
	PSKIdentity string
	PSK         []byte
	// SessionStore gives pion an in-memory session store, so that clients
	// resume by session ID (pion has no tickets and no client_state).
	SessionStore bool
	// ReadBuffer is the echo's read buffer per connection; default
	// DefaultReadBuffer.
	ReadBuffer int
}

// DefaultReadBuffer is the echo's read buffer per connection: more than a
// datagram of the default MTU. An echo that reads into 64 KiB per
// connection measures its buffers, not its DTLS stack, so both servers of a
// comparison should read into the same size.
const DefaultReadBuffer = 2048

// pionHandshakeTimeout is pion's own default (its ConnectContextMaker) and
// go-coap's DTLS server's.
const pionHandshakeTimeout = 30 * time.Second

func (cfg *PeerConfig) pion() (*piondtls.Config, error) {
	if cfg.Addr == nil || cfg.PSKIdentity == "" || len(cfg.PSK) == 0 {
		return nil, errors.New("loadgen: a pion peer needs an address and a PSK")
	}
	id, key := cfg.PSKIdentity, cfg.PSK
	c := &piondtls.Config{
		PSK: func(got []byte) ([]byte, error) {
			if string(got) != id {
				return nil, errors.New("unknown PSK identity")
			}
			return key, nil
		},
		CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: piondtls.RequestExtendedMasterSecret,
	}
	if cfg.SessionStore {
		// As many sessions as our server's default memory store keeps.
		c.SessionStore = pionstore.New(store.DefaultMemoryCapacity)
	}
	return c, nil
}

// ServePionEcho serves a DTLS echo with pion/dtls v3 on cfg.Addr until ctx
// ends. Once it listens it writes "listening on udp ADDR (pion/dtls v3
// echo)" to ready.
func ServePionEcho(ctx context.Context, cfg PeerConfig, ready io.Writer) error {
	pcfg, err := cfg.pion()
	if err != nil {
		return err
	}
	bufSize := cfg.ReadBuffer
	if bufSize <= 0 {
		bufSize = DefaultReadBuffer
	}
	l, err := piondtls.Listen("udp", cfg.Addr, pcfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(ready, "listening on udp %s (pion/dtls v3 echo)\n", l.Addr())
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pionEcho(ctx, c.(*piondtls.Conn), bufSize)
		}()
	}
}

// pionEcho completes c's handshake and answers every datagram with the
// same bytes until the peer closes or ctx ends.
func pionEcho(ctx context.Context, c *piondtls.Conn, bufSize int) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	hctx, cancel := context.WithTimeout(ctx, pionHandshakeTimeout)
	err := c.HandshakeContext(hctx)
	cancel()
	if err != nil {
		return
	}
	buf := make([]byte, bufSize)
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

// ServePionCoAP serves go-coap's own DTLS server (on pion/dtls v3) with
// coapserver.DefaultMux's resources on cfg.Addr until ctx ends. Once it
// listens it writes "serving CoAP over DTLS on udp ADDR (go-coap on
// pion/dtls v3)" to ready.
func ServePionCoAP(ctx context.Context, cfg PeerConfig, ready io.Writer) error {
	pcfg, err := cfg.pion()
	if err != nil {
		return err
	}
	l, err := coapnet.NewDTLSListener("udp", cfg.Addr.String(), pcfg)
	if err != nil {
		return err
	}
	srv := coapdtls.NewServer(options.WithMux(coapserver.DefaultMux()), options.WithErrors(func(error) {}))
	fmt.Fprintf(ready, "serving CoAP over DTLS on udp %s (go-coap on pion/dtls v3)\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		srv.Stop()
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}
