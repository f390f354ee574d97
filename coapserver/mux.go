package coapserver

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// LargeSize is the size of the /large resource of DefaultMux.
const LargeSize = 4096

// Large returns the body of DefaultMux's /large resource: LargeSize bytes
// of numbered text lines, so that a block that goes missing or out of order
// shows.
func Large() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < LargeSize; i++ {
		fmt.Fprintf(&b, "%04d the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()[:LargeSize]
}

// maxObservers bounds the observations a DefaultMux keeps; a registration
// past it is answered as a plain GET (RFC 7641 §4.1 allows that).
const maxObservers = 1024

// notifyInterval is how often /time notifies its observers.
const notifyInterval = time.Second

// notifyTimeout bounds the wait for the acknowledgement of one
// (confirmable) notification; an observer that does not acknowledge is
// dropped.
const notifyTimeout = 10 * time.Second

// wellKnownCore lists DefaultMux's resources in CoRE link format (RFC 6690).
var wellKnownCore = fmt.Sprintf(`</time>;rt="time";ct=0;obs,</echo>;ct=0,</large>;ct=0;sz=%d`, LargeSize)

// DefaultMux returns a router with these resources:
//
//	/.well-known/core  GET: the resources below in CoRE link format (ct 40)
//	/time              GET: the current UTC time, RFC 3339 (text/plain);
//	                   observable: a notification every second
//	/echo              GET: "echo"; PUT, POST, PATCH and iPATCH: 2.04 with
//	                   the request's payload and Content-Format; FETCH: the
//	                   same as 2.05
//	/large             GET: Large(), 4 KiB, more than one datagram, so it
//	                   is sent block-wise (Block2)
//
// Other paths get 4.04, other methods 4.05.
func DefaultMux() *mux.Router {
	r := mux.NewRouter()
	r.SetErrorHandler(func(error) {})
	t := &timeResource{observers: make(map[observerKey]*registration)}
	large := Large()
	must(r.Handle("/.well-known/core", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		if req.Code() != codes.GET {
			respond(w, codes.MethodNotAllowed, message.TextPlain, nil)
			return
		}
		respond(w, codes.Content, message.AppLinkFormat, []byte(wellKnownCore))
	})))
	must(r.Handle("/time", mux.HandlerFunc(t.serve)))
	must(r.Handle("/echo", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		switch req.Code() {
		case codes.GET:
			respond(w, codes.Content, message.TextPlain, []byte("echo"))
		case codes.PUT, codes.POST, codeFETCH, codePATCH, codeIPATCH:
			body, err := req.ReadBody()
			if err != nil {
				respond(w, codes.BadRequest, message.TextPlain, nil)
				return
			}
			code := codes.Changed
			if req.Code() == codeFETCH {
				code = codes.Content
			}
			cf, err := req.ContentFormat()
			if err != nil {
				// No Content-Format in the request: none in the answer.
				if err := w.SetResponse(code, 0, nil); err == nil {
					w.Message().SetBody(bytes.NewReader(body))
				}
				return
			}
			respond(w, code, cf, body)
		default:
			respond(w, codes.MethodNotAllowed, message.TextPlain, nil)
		}
	})))
	must(r.Handle("/large", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		if req.Code() != codes.GET {
			respond(w, codes.MethodNotAllowed, message.TextPlain, nil)
			return
		}
		respond(w, codes.Content, message.TextPlain, large)
	})))
	return r
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// respond sets the response; body nil means no payload (and no
// Content-Format).
func respond(w mux.ResponseWriter, code codes.Code, cf message.MediaType, body []byte, opts ...message.Option) {
	var r *bytes.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	if r == nil {
		_ = w.SetResponse(code, cf, nil, opts...)
		return
	}
	_ = w.SetResponse(code, cf, r, opts...)
}

func now() []byte { return []byte(time.Now().UTC().Format(time.RFC3339)) }

type observerKey struct {
	cc    mux.Conn
	token string
}

// timeResource is /time with its observers.
type timeResource struct {
	mu        sync.Mutex
	observers map[observerKey]*registration
}

type registration struct{ cancel context.CancelFunc }

func (t *timeResource) serve(w mux.ResponseWriter, req *mux.Message) {
	if req.Code() != codes.GET {
		respond(w, codes.MethodNotAllowed, message.TextPlain, nil)
		return
	}
	key := observerKey{cc: w.Conn(), token: string(req.Token())}
	obs, err := req.Observe()
	switch {
	case err == nil && obs == 0:
		if t.register(key) {
			_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader(now()))
			w.Message().SetObserve(firstSeq)
			return
		}
	case err == nil && obs == 1:
		t.deregister(key)
	}
	respond(w, codes.Content, message.TextPlain, now())
}

// firstSeq is the Observe value of the response that registers an
// observer; notifications count up from it (24-bit, RFC 7641 §4.4).
const firstSeq = 2

// register starts notifying key's observer; a registration with a token
// that is already observing replaces it. It reports false when the
// resource has too many observers.
func (t *timeResource) register(key observerKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.observers[key]; ok {
		old.cancel()
		delete(t.observers, key)
	}
	if len(t.observers) >= maxObservers {
		return false
	}
	ctx, cancel := context.WithCancel(key.cc.Context())
	reg := &registration{cancel: cancel}
	t.observers[key] = reg
	go t.notify(ctx, key, reg)
	return true
}

func (t *timeResource) deregister(key observerKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if reg, ok := t.observers[key]; ok {
		reg.cancel()
		delete(t.observers, key)
	}
}

// notify sends the time to one observer every notifyInterval until it
// deregisters, its connection ends, or it fails to acknowledge a
// notification (notifications are confirmable, so a peer that is gone is
// noticed).
func (t *timeResource) notify(ctx context.Context, key observerKey, reg *registration) {
	defer func() {
		reg.cancel()
		t.mu.Lock()
		// Remove this registration only, not one that replaced it.
		if t.observers[key] == reg {
			delete(t.observers, key)
		}
		t.mu.Unlock()
	}()
	tick := time.NewTicker(notifyInterval)
	defer tick.Stop()
	cc := key.cc
	token := []byte(key.token)
	for seq := uint32(firstSeq + 1); ; seq = (seq + 1) & 0xFFFFFF {
		select {
		case <-ctx.Done():
			return
		case <-cc.Done():
			return
		case <-tick.C:
		}
		if err := sendNotification(ctx, cc, token, seq); err != nil {
			return
		}
	}
}

func sendNotification(ctx context.Context, cc mux.Conn, token []byte, seq uint32) error {
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	m := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(token)
	m.SetType(message.Confirmable)
	m.SetObserve(seq)
	m.SetContentFormat(message.TextPlain)
	m.SetBody(bytes.NewReader(now()))
	return cc.WriteMessage(m)
}
