package coapclient

import (
	"context"
	"errors"
	"fmt"
	"github.com/dtlsresume/dtlsresume/internal/coaptune"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Option configures a Client. Every go-coap UDP client option is one
// (package github.com/plgd-dev/go-coap/v3/options: WithBlockwise,
// WithKeepAlive, WithInactivityMonitor, WithTransmission, WithMux, ...), and
// so is WithLogger.
type Option = udp.Option

type optionFunc func(*udpClient.Config)

func (f optionFunc) UDPClientApply(cfg *udpClient.Config) { f(cfg) }

// WithLogger sends go-coap's error reports to l (Warn); by default they are
// discarded.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(cfg *udpClient.Config) {
		cfg.Errors = func(err error) { l.Warn("coap", "err", err) }
	})
}

// Response is a CoAP response or notification.
type Response struct {
	Code codes.Code
	// ContentFormat is the Content-Format option; HasContentFormat says
	// whether the response had one.
	ContentFormat    message.MediaType
	HasContentFormat bool
	// Observe is the Observe option (a notification's sequence number);
	// HasObserve says whether the response had one.
	Observe    uint32
	HasObserve bool
	// Options are the response's options but the block-wise ones (Block1,
	// Block2, Size1, Size2): the response may have come in blocks.
	Options message.Options
	Payload []byte
}

func (r Response) String() string {
	return fmt.Sprintf("%v %q", r.Code, r.Payload)
}

// Client is a go-coap client connection over a *dtls.Conn.
type Client struct {
	conn *dtls.Conn
	cc   *udpClient.Conn
	// Block-wise transfers are the Client's, not go-coap's (see Do):
	// blockwise says whether they are on, szx is the block size.
	blockwise bool
	szx       blockwise.SZX
}

// Dial resolves addr ("host:port"), completes a DTLS handshake with cfg
// (bounded by ctx) and starts a CoAP client on the connection. The block
// size of block-wise transfers follows cfg.MTU.
func Dial(ctx context.Context, addr string, cfg *dtls.Config, opts ...Option) (*Client, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coapclient: %w", err)
	}
	conn, err := dtls.DialContext(ctx, "udp", ua, cfg)
	if err != nil {
		return nil, fmt.Errorf("coapclient: %w", err)
	}
	mtu := 0
	if cfg != nil {
		mtu = cfg.MTU
	}
	szx := coaptune.BlockSZX(mtu)
	opts = append([]Option{optionFunc(func(c *udpClient.Config) { c.BlockwiseSZX = szx })}, opts...)
	return NewClient(conn, opts...), nil
}

// NewClient starts a CoAP client on an established conn, which it owns from
// then on. Blocks are 1024 bytes, which fits the dtls default MTU; for a
// smaller MTU pass options.WithBlockwise with a smaller size. The Client
// does block-wise transfers itself with that size (see Do); go-coap's own
// are off.
func NewClient(conn *dtls.Conn, opts ...Option) *Client {
	// As go-coap's dtls.Client, on its public constructors.
	cfg := udpClient.DefaultConfig
	cfg.Errors = func(error) {}
	cfg.MTU = coaptune.MaxPlaintext
	cfg.BlockwiseSZX = coaptune.BlockSZX(0)
	cfg.BlockwiseTransferTimeout = coaptune.BlockwiseTimeout
	cfg.PeriodicRunner = coaptune.PeriodicRunner(coaptune.PeriodicTick)
	for _, o := range opts {
		o.UDPClientApply(&cfg)
	}
	cfg.CloseSocket = true // the Client owns conn: Close must end Run
	if cfg.CreateInactivityMonitor == nil {
		cfg.CreateInactivityMonitor = func() udpClient.InactivityMonitor {
			return inactivity.NewNilMonitor[*udpClient.Conn]()
		}
	}
	if cfg.MessagePool == nil {
		cfg.MessagePool = pool.New(0, 0)
	}
	errorsFunc := cfg.Errors
	if errorsFunc == nil {
		errorsFunc = func(error) {}
	}
	cfg.Errors = func(err error) {
		if coapNet.IsCancelOrCloseError(err) {
			return
		}
		errorsFunc(fmt.Errorf("dtls: %v: %w", conn.RemoteAddr(), err))
	}
	// go-coap's block-wise layer sends Block1 only for PUT and POST, and
	// takes a 2.31 Continue to anything else for a broken transfer: Do
	// does both directions itself, for every method.
	bw, szx := cfg.BlockwiseEnable, cfg.BlockwiseSZX
	if szx > blockwise.SZX1024 {
		szx = blockwise.SZX1024
	}
	cfg.BlockwiseEnable = false
	createBlockWise := func(*udpClient.Conn) *blockwise.BlockWise[*udpClient.Conn] { return nil }
	session := dtlsServer.NewSession(cfg.Ctx, coapNet.NewConn(conn), cfg.MaxMessageSize, cfg.MTU, cfg.CloseSocket)
	cc := udpClient.NewConnWithOpts(session, &cfg,
		udpClient.WithBlockWise(createBlockWise),
		udpClient.WithInactivityMonitor(cfg.CreateInactivityMonitor()),
		udpClient.WithRequestMonitor(cfg.RequestMonitor),
	)
	cfg.PeriodicRunner(func(now time.Time) bool {
		cc.CheckExpirations(now)
		return cc.Context().Err() == nil
	})
	go func() {
		if err := cc.Run(); err != nil {
			cfg.Errors(err)
		}
	}()
	return &Client{conn: conn, cc: cc, blockwise: bw, szx: szx}
}

// splitQuery splits "path?a=1&b" into the path and Uri-Query options.
func splitQuery(path string) (string, []message.Option) {
	p, q, ok := strings.Cut(path, "?")
	if !ok {
		return path, nil
	}
	var opts []message.Option
	for _, v := range strings.Split(q, "&") {
		if v != "" {
			opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(v)})
		}
	}
	return p, opts
}

// Get sends a GET for path (which may end in "?query"; '&' separates
// Uri-Query options) and returns the response, whatever its code. A large
// response is fetched block-wise.
func (c *Client) Get(ctx context.Context, path string) (Response, error) {
	return c.Do(ctx, Request{Method: codes.GET, Path: path})
}

// Put sends a PUT with payload (block-wise when it is large).
func (c *Client) Put(ctx context.Context, path string, contentFormat message.MediaType, payload []byte) (Response, error) {
	return c.Do(ctx, Request{Method: codes.PUT, Path: path, Options: contentFormatOption(contentFormat), Payload: payload})
}

// Post sends a POST with payload (block-wise when it is large).
func (c *Client) Post(ctx context.Context, path string, contentFormat message.MediaType, payload []byte) (Response, error) {
	return c.Do(ctx, Request{Method: codes.POST, Path: path, Options: contentFormatOption(contentFormat), Payload: payload})
}

// Delete sends a DELETE.
func (c *Client) Delete(ctx context.Context, path string) (Response, error) {
	return c.Do(ctx, Request{Method: codes.DELETE, Path: path})
}

func contentFormatOption(cf message.MediaType) []message.Option {
	return []message.Option{{ID: message.ContentFormat, Value: encodeUint(uint32(cf))}}
}

// Observe registers for notifications of path (RFC 7641). onNotify gets
// the registration's response first, then each notification that go-coap
// accepts as newer (by Observe sequence), one at a time and in order, on a
// goroutine of the observation's own. Observe returns once
// the server answered the registration (an error for a code other than 2.05
// or 2.03); cancel deregisters. A server that does not support observe
// answers without an Observe option: onNotify sees HasObserve false and
// nothing follows.
func (c *Client) Observe(ctx context.Context, path string, onNotify func(Response)) (cancel func(ctx context.Context) error, err error) {
	if onNotify == nil {
		return nil, errors.New("coapclient: Observe needs onNotify")
	}
	first, cancel, err := c.observe(ctx, Request{Method: codes.GET, Path: path}, onNotify, true)
	if err != nil {
		return nil, err
	}
	if first.Code != codes.Content && first.Code != codes.Valid {
		_ = cancel(ctx)
		return nil, fmt.Errorf("coapclient: observing %s: the server answered %v", path, first.Code)
	}
	return cancel, nil
}

// ObserveRequest registers for notifications with a GET or FETCH request
// (RFC 7641, RFC 8132) and returns the registration's response, whatever
// its code. When the response is a success with an Observe option, the
// notifications that follow go to onNotify (not the registration's
// response), one at a time and in order, on a goroutine of the
// observation's own, until cancel. Otherwise nothing follows and cancel
// does nothing.
func (c *Client) ObserveRequest(ctx context.Context, req Request, onNotify func(Response)) (first Response, cancel func(ctx context.Context) error, err error) {
	if onNotify == nil {
		return Response{}, nil, errors.New("coapclient: ObserveRequest needs onNotify")
	}
	return c.observe(ctx, req, onNotify, false)
}

// ConnectionState returns the DTLS connection's state.
func (c *Client) ConnectionState() dtls.ConnectionState { return c.conn.ConnectionState() }

// CoAP returns the go-coap connection, for what this package does not wrap
// (Ping, custom messages, Done).
func (c *Client) CoAP() *udpClient.Conn { return c.cc }

// Close closes the CoAP client and the DTLS connection (sending
// close_notify) and waits for the receive goroutine to end.
func (c *Client) Close() error {
	err := c.cc.Close()
	<-c.cc.Done()
	return err
}
