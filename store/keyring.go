package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// Encoding of ticket keys for the stores (file meta record, Redis hash).
//
//	struct {
//	    uint8  version;         /* 1 */
//	    opaque secret[16];
//	    int64  created;         /* Unix nanoseconds */
//	    int64  not_before;
//	    int64  seal_until;
//	} StoredTicketKey;          /* 41 bytes; the name is derived from the secret */
const (
	storedKeyVersion = 1
	storedKeySize    = 1 + ticketfmt.KeySize + 3*8
)

func encodeTicketKey(dst []byte, k ticketfmt.ExportedKey) []byte {
	dst = append(dst, storedKeyVersion)
	dst = append(dst, k.Secret[:]...)
	for _, t := range []time.Time{k.Created, k.NotBefore, k.SealUntil} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(t.UnixNano()))
	}
	return dst
}

func decodeTicketKey(b []byte) (ticketfmt.ExportedKey, error) {
	var k ticketfmt.ExportedKey
	if len(b) != storedKeySize || b[0] != storedKeyVersion {
		return k, errors.New("store: malformed ticket key record")
	}
	copy(k.Secret[:], b[1:])
	key, err := ticketfmt.NewKey(k.Secret[:])
	if err != nil {
		return k, err
	}
	k.Name = key.Name
	at := func(i int) time.Time {
		return time.Unix(0, int64(binary.BigEndian.Uint64(b[1+ticketfmt.KeySize+8*i:])))
	}
	k.Created, k.NotBefore, k.SealUntil = at(0), at(1), at(2)
	return k, nil
}

func encodeTicketKeys(keys []ticketfmt.ExportedKey) []byte {
	b := make([]byte, 0, len(keys)*storedKeySize)
	for _, k := range keys {
		b = encodeTicketKey(b, k)
	}
	return b
}

func decodeTicketKeys(b []byte) ([]ticketfmt.ExportedKey, error) {
	if len(b)%storedKeySize != 0 {
		return nil, errors.New("store: malformed ticket key list")
	}
	out := make([]ticketfmt.ExportedKey, 0, len(b)/storedKeySize)
	for ; len(b) > 0; b = b[storedKeySize:] {
		k, err := decodeTicketKey(b[:storedKeySize])
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// fileRingMeta is the meta record that keeps a file store's ticket keys.
const fileRingMeta = "ticketfmt.KeyRing"

// PersistentKeyRing is a ticket key ring kept in a [File] store, so that
// tickets issued before a restart still open after it.
type PersistentKeyRing struct {
	Ring *ticketfmt.KeyRing

	f      *File
	log    *slog.Logger
	notify chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// FileKeyRing returns the ticket key ring kept in f: the keys an earlier run
// saved there, when any of them may still open tickets, else a fresh ring,
// which is saved before FileKeyRing returns. Afterwards every change of the
// ring (a rotation, a retired key) is saved in the background, within
// moments; a crash in that moment loses the newest key, which costs the
// clients whose tickets it sealed a full handshake. cfg.OnChange and
// cfg.Keys are set by FileKeyRing. Call Close when done (before closing f).
func FileKeyRing(f *File, cfg ticketfmt.KeyRingConfig, logger *slog.Logger) (*PersistentKeyRing, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &PersistentKeyRing{f: f, log: logger, notify: make(chan struct{}, 1), done: make(chan struct{})}
	if saved, ok := f.GetMeta(fileRingMeta); ok {
		keys, err := decodeTicketKeys(saved)
		if err != nil {
			logger.Warn("store: the saved ticket keys do not decode; starting a new ring", "err", err)
		} else {
			cfg.Keys = keys
		}
	}
	cfg.OnChange = func() {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	ring, err := ticketfmt.NewKeyRing(cfg)
	if err != nil {
		return nil, err
	}
	p.Ring = ring
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.save(ctx); err != nil {
		return nil, fmt.Errorf("store: saving the ticket key ring: %w", err)
	}
	p.wg.Add(1)
	go p.loop()
	return p, nil
}

func (p *PersistentKeyRing) save(ctx context.Context) error {
	return p.f.PutMeta(ctx, fileRingMeta, encodeTicketKeys(p.Ring.Export()))
}

func (p *PersistentKeyRing) loop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.notify:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := p.save(ctx); err != nil {
				p.log.Warn("store: saving the ticket key ring failed; tickets of its newest key may not open after a restart", "err", err)
			}
			cancel()
		case <-p.done:
			return
		}
	}
}

// Close stops saving changes, after saving the ring a last time.
func (p *PersistentKeyRing) Close() error {
	var err error
	p.once.Do(func() {
		close(p.done)
		p.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = p.save(ctx)
	})
	return err
}
