package coapserver

import (
	"context"
	"errors"
	"fmt"
	"github.com/dtlsresume/dtlsresume/internal/coaptune"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Options configures a Server.
type Options struct {
	// DTLS configures the listener that ListenAndServe opens; its MTU
	// (default 1232) also sets the block-wise block size. Serve uses the
	// Listener it is given.
	DTLS *dtls.Config
	// Handler serves requests; nil means DefaultMux().
	Handler mux.Handler
	// Logger receives go-coap's error reports (Warn); nil discards them.
	Logger *slog.Logger
	// InactivityTimeout closes a connection that received nothing for that
	// long. 0 keeps go-coap's default (16 s); a negative value disables it.
	InactivityTimeout time.Duration
	// Extra go-coap DTLS server options (package
	// github.com/plgd-dev/go-coap/v3/options: WithKeepAlive, WithBlockwise,
	// WithTransmission, WithOnNewConn, ...), applied after the ones above.
	Extra []dtlsServer.Option
}

// Server is a go-coap DTLS server on package dtls. Besides Options, it sets
// these go-coap options: block-wise transfers on, with blocks that fit the
// DTLS MTU and a 10 s transfer timeout; a 16 KiB read buffer; a periodic
// runner (retransmissions, inactivity checks) that ticks every 500 ms
// instead of every 4 s; go-coap's errors to Options.Logger.
//
// Block-wise transfers (RFC 7959) are done by Server, not by go-coap, so
// that handlers see a Block1 upload whole whatever the client does with
// tokens, for every method (FETCH, PATCH and iPATCH included): blocks belong
// to one upload when they come on one connection with the same code and
// options (Request-Tag included, RFC 9175), and the handler runs once, on
// the whole body. An upload may total go-coap's MaxMessageSize (64 KiB;
// options.WithMaxMessageSize); a connection has at most 4 uploads, and 4
// responses being sent in blocks, open at once. options.WithBlockwise in
// Extra sets the block size and the transfer timeout, or turns block-wise
// transfers off. Messages a handler sends on its own (notifications through
// Conn().WriteMessage) are not split: keep them within one block.
type Server struct {
	srv       *dtlsServer.Server
	dtls      *dtls.Config
	blockwise *blockwiseHandler // nil when block-wise transfers are off
}

type serverOption func(*dtlsServer.Config)

func (o serverOption) DTLSServerApply(cfg *dtlsServer.Config) { o(cfg) }

// New creates a Server.
func New(opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := opts.Handler
	if h == nil {
		r := DefaultMux()
		r.SetErrorHandler(func(err error) { logger.Warn("coap: router", "err", err) })
		h = r
	}
	mtu := 0
	if opts.DTLS != nil {
		mtu = opts.DTLS.MTU
	}
	list := []dtlsServer.Option{
		options.WithMux(h),
		options.WithErrors(func(err error) { logger.Warn("coap", "err", err) }),
		options.WithMTU(coaptune.MaxPlaintext),
		options.WithBlockwise(true, coaptune.BlockSZX(mtu), coaptune.BlockwiseTimeout),
		options.WithPeriodicRunner(coaptune.PeriodicRunner(coaptune.PeriodicTick)),
	}
	switch {
	case opts.InactivityTimeout > 0:
		list = append(list, options.WithInactivityMonitor(opts.InactivityTimeout, func(cc *udpClient.Conn) {
			logger.Debug("coap: closing inactive connection", "peer", cc.RemoteAddr().String())
			_ = cc.Close()
		}))
	case opts.InactivityTimeout < 0:
		list = append(list, serverOption(func(cfg *dtlsServer.Config) {
			cfg.CreateInactivityMonitor = func() udpClient.InactivityMonitor {
				return inactivity.NewNilMonitor[*udpClient.Conn]()
			}
		}))
	}
	for _, o := range opts.Extra {
		if o == nil {
			return nil, errors.New("coapserver: nil option in Extra")
		}
	}
	list = append(list, opts.Extra...)
	// Last: block-wise transfers move from go-coap into blockwiseHandler,
	// with the settings the options above (Extra included) left.
	s := &Server{dtls: opts.DTLS}
	list = append(list, serverOption(func(cfg *dtlsServer.Config) {
		if !cfg.BlockwiseEnable || cfg.Handler == nil {
			return
		}
		s.blockwise = newBlockwiseHandler(cfg.Handler, cfg.BlockwiseSZX, cfg.BlockwiseTransferTimeout, cfg.MaxMessageSize)
		cfg.Handler = s.blockwise.serve
		cfg.BlockwiseEnable = false
	}))
	s.srv = dtlsServer.New(list...)
	return s, nil
}

// Serve serves CoAP on the connections l accepts until Stop. It closes l
// and every connection before it returns, and returns nil after Stop.
func (s *Server) Serve(l *dtls.Listener) error {
	if l == nil {
		return errors.New("coapserver: nil listener")
	}
	return s.srv.Serve(&listener{l: l})
}

// ListenAndServe opens a dtls.Listener on the UDP address addr with
// Options.DTLS and serves it (see Serve).
func (s *Server) ListenAndServe(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("coapserver: %w", err)
	}
	l, err := dtls.Listen("udp", ua, s.dtls)
	if err != nil {
		return fmt.Errorf("coapserver: %w", err)
	}
	return s.Serve(l)
}

// Stop stops the server: it closes the listener and every connection, and
// Serve returns once their goroutines are done. Stop does not wait for that
// (a handler may call it).
func (s *Server) Stop() {
	s.srv.Stop()
}

// listener adapts a *dtls.Listener to go-coap's server Listener: go-coap
// ends its accept loop only on io.EOF.
type listener struct{ l *dtls.Listener }

func (l *listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	c, err := l.l.AcceptWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		return nil, fmt.Errorf("%w: %w", io.EOF, err)
	}
	return c, err
}

func (l *listener) Close() error { return l.l.Close() }

// ConnectionState returns the DTLS state of the connection a request came
// on, for handlers (w.Conn()); ok is false when cc is not on package dtls.
func ConnectionState(cc mux.Conn) (state dtls.ConnectionState, ok bool) {
	if cc == nil {
		return dtls.ConnectionState{}, false
	}
	c, ok := cc.NetConn().(*dtls.Conn)
	if !ok {
		return dtls.ConnectionState{}, false
	}
	return c.ConnectionState(), true
}

// *dtls.Listener is a go-coap server Listener as it is.
var _ dtlsServer.Listener = (*dtls.Listener)(nil)
