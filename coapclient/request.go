package coapclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
)

// Request codes go-coap has no names for (RFC 8132).
const (
	FETCH  codes.Code = 5
	PATCH  codes.Code = 6
	IPATCH codes.Code = 7
)

// MaxResponseSize bounds the payload Do collects from a response that comes
// in blocks.
const MaxResponseSize = 16 << 20

// Request is a CoAP request for Do.
type Request struct {
	// Method is codes.GET, codes.POST, codes.PUT, codes.DELETE, FETCH,
	// PATCH or IPATCH.
	Method codes.Code
	// Path may end in "?query"; '&' separates Uri-Query options.
	Path string
	// Options are sent besides the path's and the query's: Content-Format,
	// Accept, ETag, or any number. Block1, Block2, Size1 and Size2 are
	// Do's own.
	Options []message.Option
	Payload []byte
	// NonConfirmable sends the request (each block of it) as NON.
	NonConfirmable bool
}

// Do sends req and returns the response, whatever its code. A payload
// bigger than a block goes block-wise (Block1, any method), and a response
// that comes in blocks (Block2) is collected whole. Every block of one
// request carries the same token. When the client's block size is below
// 1024 bytes, the request also asks the server for blocks of that size
// (RFC 7959 §2.4).
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	if req.Method < codes.GET || req.Method > IPATCH {
		return Response{}, fmt.Errorf("coapclient: %v is not a request code", req.Method)
	}
	for _, o := range req.Options {
		switch o.ID {
		case message.Block1, message.Block2, message.Size1, message.Size2:
			return Response{}, fmt.Errorf("coapclient: option %v is Do's own", o.ID)
		}
	}
	token, err := c.cc.GetToken()
	if err != nil {
		return Response{}, fmt.Errorf("coapclient: %w", err)
	}
	resp, err := c.upload(ctx, req, token)
	if err != nil {
		return Response{}, err
	}
	return c.download(ctx, req, token, resp)
}

// upload sends req, in blocks when its payload is bigger than one, and
// returns the response to its last block (or the response that ended the
// transfer early).
func (c *Client) upload(ctx context.Context, req Request, token message.Token) (Response, error) {
	szx := c.szx
	if !c.blockwise || len(req.Payload) <= int(szx.Size()) {
		return c.exchange(ctx, req, token, req.Payload, c.hint())
	}
	for off := 0; ; {
		size := int(szx.Size())
		end := min(off+size, len(req.Payload))
		more := end < len(req.Payload)
		block, err := blockwise.EncodeBlockOption(szx, int64(off/size), more)
		if err != nil {
			return Response{}, fmt.Errorf("coapclient: %w", err)
		}
		opts := []message.Option{{ID: message.Block1, Value: encodeUint(block)}}
		if off == 0 {
			opts = append(opts, message.Option{ID: message.Size1, Value: encodeUint(uint32(len(req.Payload)))})
		}
		if !more {
			opts = append(opts, c.hint()...)
		}
		resp, err := c.exchange(ctx, req, token, req.Payload[off:end], opts)
		if err != nil || !more || resp.Code != codes.Continue {
			return resp, err
		}
		// The server may ask for smaller blocks from now on (RFC 7959
		// §2.5); the offset stays.
		if v, err := resp.Options.GetUint32(message.Block1); err == nil {
			if s, _, _, err := blockwise.DecodeBlockOption(v); err == nil && s < szx {
				szx = s
			}
		}
		off = end
	}
}

// hint is the Block2 option that asks for blocks of the client's size, when
// it is below the largest.
func (c *Client) hint() []message.Option {
	if !c.blockwise || c.szx >= blockwise.SZX1024 {
		return nil
	}
	v, _ := blockwise.EncodeBlockOption(c.szx, 0, false)
	return []message.Option{{ID: message.Block2, Value: encodeUint(v)}}
}

// download completes resp when it is the first block of a response: it asks
// for the next blocks with req's method and options (no payload) until the
// last.
func (c *Client) download(ctx context.Context, req Request, token message.Token, resp Response) (Response, error) {
	v, err := resp.Options.GetUint32(message.Block2)
	if err != nil {
		return stripBlockOptions(resp), nil
	}
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return Response{}, fmt.Errorf("coapclient: Block2 option 0x%x in the response is not valid", v)
	}
	if !more {
		return stripBlockOptions(resp), nil
	}
	if num != 0 {
		return Response{}, fmt.Errorf("coapclient: the response starts with block %d", num)
	}
	etag, _ := resp.Options.GetBytes(message.ETag)
	body := append([]byte(nil), resp.Payload...)
	next := Request{Method: req.Method, Path: req.Path, NonConfirmable: req.NonConfirmable}
	for _, o := range req.Options {
		if o.ID != message.Observe {
			next.Options = append(next.Options, o)
		}
	}
	for more {
		if len(body)%int(szx.Size()) != 0 {
			return Response{}, fmt.Errorf("coapclient: block %d of the response has %d bytes, not %d", num, len(resp.Payload), szx.Size())
		}
		want := int64(len(body)) / szx.Size()
		block, err := blockwise.EncodeBlockOption(szx, want, false)
		if err != nil {
			return Response{}, fmt.Errorf("coapclient: %w", err)
		}
		r, err := c.exchange(ctx, next, token, nil, []message.Option{{ID: message.Block2, Value: encodeUint(block)}})
		if err != nil {
			return Response{}, fmt.Errorf("coapclient: block %d of the response: %w", want, err)
		}
		v, err := r.Options.GetUint32(message.Block2)
		if err != nil {
			return Response{}, fmt.Errorf("coapclient: block %d of the response: the server answered %v without Block2", want, r.Code)
		}
		if szx, num, more, err = blockwise.DecodeBlockOption(v); err != nil || szx > blockwise.SZX1024 {
			return Response{}, fmt.Errorf("coapclient: Block2 option 0x%x in the response is not valid", v)
		}
		if num*szx.Size() != int64(len(body)) {
			return Response{}, fmt.Errorf("coapclient: asked for the block at byte %d, got block %d of %d bytes", len(body), num, szx.Size())
		}
		if e, _ := r.Options.GetBytes(message.ETag); !bytes.Equal(e, etag) {
			return Response{}, errors.New("coapclient: the resource changed (ETag) while its blocks were fetched")
		}
		if len(body)+len(r.Payload) > MaxResponseSize {
			return Response{}, fmt.Errorf("coapclient: the response is bigger than %d bytes", MaxResponseSize)
		}
		body = append(body, r.Payload...)
	}
	resp.Payload = body
	return stripBlockOptions(resp), nil
}

// exchange sends one message of req, with payload and the extra options,
// and waits for its response.
func (c *Client) exchange(ctx context.Context, req Request, token message.Token, payload []byte, extra []message.Option) (Response, error) {
	m, err := c.message(ctx, req, token, payload, extra)
	if err != nil {
		return Response{}, err
	}
	defer c.cc.ReleaseMessage(m)
	resp, err := c.cc.Do(m)
	if err != nil {
		return Response{}, err
	}
	defer c.cc.ReleaseMessage(resp)
	return toResponse(resp)
}

// message builds one message of req.
func (c *Client) message(ctx context.Context, req Request, token message.Token, payload []byte, extra []message.Option) (*pool.Message, error) {
	m := c.cc.AcquireMessage(ctx)
	m.SetCode(req.Method)
	m.SetToken(token)
	p, query := splitQuery(req.Path)
	if err := m.SetPath(p); err != nil {
		c.cc.ReleaseMessage(m)
		return nil, fmt.Errorf("coapclient: path %q: %w", p, err)
	}
	for _, opts := range [][]message.Option{query, req.Options, extra} {
		for _, o := range opts {
			m.AddOptionBytes(o.ID, o.Value)
		}
	}
	if req.NonConfirmable {
		m.SetType(message.NonConfirmable)
	}
	if payload != nil {
		m.SetBody(bytes.NewReader(payload))
	}
	return m, nil
}

func toResponse(m *pool.Message) (Response, error) {
	r := Response{Code: m.Code()}
	if cf, err := m.ContentFormat(); err == nil {
		r.ContentFormat, r.HasContentFormat = cf, true
	}
	if obs, err := m.Observe(); err == nil {
		r.Observe, r.HasObserve = obs, true
	}
	opts, err := m.Options().Clone()
	if err != nil {
		return r, fmt.Errorf("coapclient: %w", err)
	}
	r.Options = opts
	if m.Body() != nil {
		b, err := m.ReadBody()
		if err != nil {
			return r, fmt.Errorf("coapclient: reading the payload: %w", err)
		}
		r.Payload = b
	}
	return r, nil
}

func stripBlockOptions(r Response) Response {
	r.Options = r.Options.Remove(message.Block1).Remove(message.Block2).Remove(message.Size1).Remove(message.Size2)
	if len(r.Options) == 0 {
		r.Options = nil
	}
	return r
}

// encodeUint is a uint option value: big-endian, no leading zero bytes
// (RFC 7252 §3.2).
func encodeUint(v uint32) []byte {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// observe registers req as an observation. Responses go from go-coap's
// receive loop into a queue; one goroutine takes them in order, fetches the
// rest of a notification that comes in blocks (RFC 7959 §2.6), hands the
// first to the registration and the others to onNotify (the first too when
// notifyFirst).
func (c *Client) observe(ctx context.Context, req Request, onNotify func(Response), notifyFirst bool) (Response, func(context.Context) error, error) {
	if req.Method != codes.GET && req.Method != FETCH {
		return Response{}, nil, fmt.Errorf("coapclient: observe with %v: want GET or FETCH", req.Method)
	}
	token, err := c.cc.GetToken()
	if err != nil {
		return Response{}, nil, fmt.Errorf("coapclient: %w", err)
	}
	extra := append([]message.Option{{ID: message.Observe, Value: nil}}, c.hint()...)
	m, err := c.message(ctx, req, token, req.Payload, extra)
	if err != nil {
		return Response{}, nil, err
	}
	defer c.cc.ReleaseMessage(m)

	queue := make(chan Response, 32)
	firstCh := make(chan Response, 1)
	stop := make(chan struct{})
	var stopOnce sync.Once
	end := func() { stopOnce.Do(func() { close(stop) }) }
	go func() {
		first := true
		for {
			var r Response
			select {
			case r = <-queue:
			case <-stop:
				return
			case <-c.cc.Done():
				return
			}
			if _, err := r.Options.GetUint32(message.Block2); err == nil {
				// The rest of the representation, with GET (RFC 7959
				// §2.6), bounded by the transfer timeout.
				rest := Request{Method: codes.GET, Path: req.Path, Options: req.Options, NonConfirmable: req.NonConfirmable}
				if req.Method == FETCH {
					rest = req
				}
				fctx, cancel := context.WithTimeout(c.cc.Context(), blockTimeout)
				t, err := c.cc.GetToken()
				if err == nil {
					r, err = c.download(fctx, rest, t, r)
				}
				cancel()
				if err != nil {
					continue
				}
			} else {
				r = stripBlockOptions(r)
			}
			if first {
				first = false
				if notifyFirst {
					onNotify(r)
				}
				firstCh <- r
				continue
			}
			select {
			case <-stop:
				return
			default:
			}
			onNotify(r)
		}
	}()
	obs, err := c.cc.DoObserve(m, func(m *pool.Message) {
		r, err := toResponse(m)
		if err != nil {
			return
		}
		select {
		case queue <- r:
		default: // the goroutine is behind: a later notification supersedes this one
		}
	})
	if err != nil {
		// go-coap fails a registration answered with a code other than
		// 2.05 or 2.03, after handing over the response: return that.
		select {
		case r := <-firstCh:
			end()
			return r, func(context.Context) error { return nil }, nil
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		end()
		return Response{}, nil, err
	}
	var first Response
	select {
	case first = <-firstCh:
	case <-ctx.Done():
		end()
		_ = obs.Cancel(context.Background())
		return Response{}, nil, ctx.Err()
	}
	cancel := func(ctx context.Context) error {
		end()
		return obs.Cancel(ctx)
	}
	if !first.HasObserve || first.Code != codes.Content && first.Code != codes.Valid {
		end()
		cancel = func(context.Context) error { return nil }
	}
	return first, cancel, nil
}

// blockTimeout bounds fetching the rest of a notification that comes in
// blocks.
const blockTimeout = 10 * time.Second
