package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/redis/go-redis/v9"
)

// Defaults of [KeySyncConfig].
const (
	DefaultKeySyncInterval = 30 * time.Second
)

// KeySyncConfig configures a [KeySync].
type KeySyncConfig struct {
	// Interval is how often the ring is synchronised with Redis; default
	// DefaultKeySyncInterval.
	Interval time.Duration
	// Lead is how far ahead of its first use a new key is published: every
	// server fetches it within Interval, so it opens the key's tickets
	// before any server seals with it. Default 3×Interval; at least
	// 2×Interval. Servers' clocks may differ by up to Lead−Interval.
	Lead time.Duration
	// Manual starts no background loop: the caller calls SyncNow (tests).
	Manual bool
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// KeySync keeps a managed [ticketfmt.KeyRing] in step with the ticket key
// schedule that a cluster of servers shares through one Redis, so that a
// ticket sealed by any server opens on every other. See the package
// documentation for the protocol.
type KeySync struct {
	r        *Redis
	ring     *ticketfmt.KeyRing
	interval time.Duration
	lead     time.Duration
	log      *slog.Logger
	hashKey  string
	lockKey  string

	mu      sync.Mutex // serialises SyncNow
	healthy bool       // the last sync succeeded (for logging transitions)
	// foreign is how many published fields failed authentication under
	// the store key at the last load (logged when it changes).
	foreign int

	trigger     chan struct{}
	lastTrigger atomic.Int64
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup

	syncs, failures, published atomic.Uint64
}

// KeySyncStats counts a KeySync's work.
type KeySyncStats struct {
	Syncs     uint64 // successful synchronisations
	Failures  uint64 // failed ones (Redis unreachable, ...)
	Published uint64 // keys this server published
}

// SyncKeyRing keeps ring, which must be Managed, in step with the schedule
// in r: it synchronises once now (a failure is logged, not returned: the
// ring goes on with its own key until Redis answers), then every Interval
// and whenever Trigger asks, until Stop. Errors are for a configuration
// that cannot work.
func SyncKeyRing(ctx context.Context, r *Redis, ring *ticketfmt.KeyRing, cfg KeySyncConfig) (*KeySync, error) {
	if !ring.Managed() {
		return nil, errors.New("store: SyncKeyRing: the ring must be Managed")
	}
	s := &KeySync{
		r:        r,
		ring:     ring,
		interval: cfg.Interval,
		lead:     cfg.Lead,
		log:      cfg.Logger,
		hashKey:  r.prefix + "ticketkeys",
		lockKey:  r.prefix + "ticketkeys:lock",
		healthy:  true,
		trigger:  make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if s.interval <= 0 {
		s.interval = DefaultKeySyncInterval
	}
	if s.lead == 0 {
		s.lead = 3 * s.interval
	}
	if s.lead < 2*s.interval {
		return nil, fmt.Errorf("store: SyncKeyRing: Lead %v is less than twice the Interval %v", s.lead, s.interval)
	}
	if ring.Rotation() <= s.lead+s.interval {
		return nil, fmt.Errorf("store: SyncKeyRing: the ring's Rotation %v must exceed Lead+Interval %v", ring.Rotation(), s.lead+s.interval)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	_ = s.SyncNow(ctx)
	if !cfg.Manual {
		s.wg.Add(1)
		go s.loop()
	}
	return s, nil
}

// SharedKeyRing makes a managed ring configured by cfg (Managed and
// OnUnknownKey are set here) and keeps it in step with the schedule in r
// (SyncKeyRing). A ticket naming a key the ring does not hold triggers an
// early sync, at most once a second.
func SharedKeyRing(ctx context.Context, r *Redis, cfg ticketfmt.KeyRingConfig, scfg KeySyncConfig) (*ticketfmt.KeyRing, *KeySync, error) {
	var ks atomic.Pointer[KeySync]
	cfg.Managed = true
	cfg.OnUnknownKey = func([ticketfmt.KeyNameSize]byte) {
		if s := ks.Load(); s != nil {
			s.Trigger()
		}
	}
	ring, err := ticketfmt.NewKeyRing(cfg)
	if err != nil {
		return nil, nil, err
	}
	s, err := SyncKeyRing(ctx, r, ring, scfg)
	if err != nil {
		return nil, nil, err
	}
	ks.Store(s)
	return ring, s, nil
}

func (s *KeySync) loop() {
	defer s.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.trigger:
		case <-s.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*s.r.timeout)
		_ = s.SyncNow(ctx)
		cancel()
	}
}

// Trigger asks for a sync soon, at most once a second; it never blocks.
func (s *KeySync) Trigger() {
	now := time.Now().UnixNano()
	last := s.lastTrigger.Load()
	if now-last < int64(time.Second) || !s.lastTrigger.CompareAndSwap(last, now) {
		return
	}
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Stop ends the background loop.
func (s *KeySync) Stop() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// Stats returns the counters.
func (s *KeySync) Stats() KeySyncStats {
	return KeySyncStats{Syncs: s.syncs.Load(), Failures: s.failures.Load(), Published: s.published.Load()}
}

// SyncNow synchronises the ring with Redis: it imports the published
// schedule and, when the schedule needs it, publishes the next key (under a
// lock, so one server does) and removes expired keys.
func (s *KeySync) SyncNow(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sync(ctx)
	if err != nil {
		s.failures.Add(1)
		if s.healthy {
			s.log.Warn("store: ticket key sync with redis failed; sealing with the keys held until it works again", "err", err)
		}
		s.healthy = false
		return err
	}
	s.syncs.Add(1)
	if !s.healthy {
		s.log.Info("store: ticket key sync with redis works again")
	}
	s.healthy = true
	return nil
}

func (s *KeySync) sync(ctx context.Context) error {
	keys, bad, err := s.load(ctx)
	if err != nil {
		return err
	}
	if err := s.ring.SyncKeys(keys); err != nil {
		return err
	}
	if !s.needsWork(keys, bad, s.ring.Now()) {
		return nil
	}
	token, err := s.lock(ctx)
	if err != nil {
		return err
	}
	if token == "" {
		// Another server is publishing right now: take its keys as soon
		// as they land rather than at the next sync an Interval away, so
		// that servers started together agree on their first keys.
		return s.awaitPublisher(ctx)
	}
	defer s.unlock(token)
	if keys, bad, err = s.load(ctx); err != nil {
		return err
	}
	now := s.ring.Now()
	set, del, err := s.plan(keys, bad, now)
	if err != nil {
		return err
	}
	if len(set) > 0 || len(del) > 0 {
		ctx, cancel := context.WithTimeout(ctx, s.r.timeout)
		defer cancel()
		_, err := s.r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if len(set) > 0 {
				p.HSet(ctx, s.hashKey, set)
			}
			if len(del) > 0 {
				p.HDel(ctx, s.hashKey, del...)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: redis: publishing ticket keys: %w", err)
		}
	}
	if keys, _, err = s.load(ctx); err != nil {
		return err
	}
	return s.ring.SyncKeys(keys)
}

// latest is the scheduled key that starts last.
func latest(keys []ticketfmt.ExportedKey) int {
	l := -1
	for i, k := range keys {
		if l < 0 || k.NotBefore.After(keys[l].NotBefore) || (k.NotBefore.Equal(keys[l].NotBefore) && k.Created.After(keys[l].Created)) {
			l = i
		}
	}
	return l
}

// needsWork reports whether the schedule needs a new key or a clean-up.
func (s *KeySync) needsWork(keys []ticketfmt.ExportedKey, bad []string, now time.Time) bool {
	l := latest(keys)
	if l < 0 || len(bad) > 0 || keys[l].SealUntil.Before(now.Add(s.lead+s.interval)) {
		return true
	}
	for i, k := range keys {
		if i != l && now.After(k.SealUntil.Add(s.ring.TicketLifetime())) {
			return true
		}
	}
	return false
}

// plan works out the fields to set and delete.
func (s *KeySync) plan(keys []ticketfmt.ExportedKey, bad []string, now time.Time) (map[string]any, []string, error) {
	set := map[string]any{}
	del := bad
	if len(keys) == 0 {
		// A new cluster (or a flushed Redis): publish the key this ring
		// seals with now, so that nothing it sealed is lost.
		cur := s.ring.Export()[0]
		keys = append(keys, cur)
		s.put(set, cur)
		s.published.Add(1)
	}
	l := latest(keys)
	if last := keys[l]; last.SealUntil.Before(now.Add(s.lead + s.interval)) {
		nb := now.Add(s.lead)
		if last.SealUntil.After(nb) {
			nb = last.SealUntil
		}
		if nb.After(last.SealUntil) {
			// Keep the schedule without a gap: the last key seals until
			// the next one starts.
			last.SealUntil = nb
			s.put(set, last)
		}
		var secret [ticketfmt.KeySize]byte
		if _, err := rand.Read(secret[:]); err != nil {
			return nil, nil, err
		}
		k, err := ticketfmt.NewKey(secret[:])
		if err != nil {
			return nil, nil, err
		}
		next := ticketfmt.ExportedKey{KeyInfo: ticketfmt.KeyInfo{Name: k.Name, Created: now, NotBefore: nb, SealUntil: nb.Add(s.ring.Rotation())}, Secret: secret}
		s.put(set, next)
		s.published.Add(1)
	}
	for i, k := range keys {
		if i != l && now.After(k.SealUntil.Add(s.ring.TicketLifetime())) {
			del = append(del, hex.EncodeToString(k.Name[:]))
		}
	}
	return set, del, nil
}

func (s *KeySync) put(set map[string]any, k ticketfmt.ExportedKey) {
	field := hex.EncodeToString(k.Name[:])
	v := encodeTicketKey(nil, k)
	if s.r.sealer != nil {
		sealed, err := s.r.sealer.seal(nil, v, s.aad(field))
		if err != nil {
			return
		}
		v = sealed
	}
	set[field] = v
}

func (s *KeySync) aad(field string) []byte {
	return []byte("ticketkey\x00" + s.hashKey + "\x00" + field)
}

// load reads the published schedule; fields that do not decode are
// returned in bad (and deleted by the next publication).
//
// With a store key, a field that fails authentication is neither used nor
// deleted: it was sealed under another key (servers of another cluster, or
// misconfigured, sharing the prefix) or written by someone who can write
// to Redis but does not hold the key (a forged key in the clear, say).
// Using it would let that someone choose the ticket key; deleting it would
// let two clusters with different keys delete each other's schedule at
// every sync. They are logged when their number changes.
func (s *KeySync) load(ctx context.Context) ([]ticketfmt.ExportedKey, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.timeout)
	defer cancel()
	m, err := s.r.c.HGetAll(ctx, s.hashKey).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("store: redis: reading ticket keys: %w", err)
	}
	var keys []ticketfmt.ExportedKey
	var bad []string
	foreign := 0
	defer func() {
		if foreign != s.foreign && foreign > 0 {
			s.log.Warn("store: redis: published ticket keys not sealed under our store key (another store key, or forged); ignored",
				"hash", s.hashKey, "count", foreign)
		}
		s.foreign = foreign
	}()
	for field, v := range m {
		b := []byte(v)
		if s.r.sealer != nil {
			if b, err = s.r.sealer.open(b, s.aad(field)); err != nil {
				foreign++
				continue
			}
		}
		k, err := decodeTicketKey(b)
		if err == nil && hex.EncodeToString(k.Name[:]) != field {
			err = errors.New("name does not match")
		}
		if err == nil && (k.NotBefore.Before(k.Created) || k.SealUntil.Before(k.NotBefore)) {
			err = errors.New("inconsistent times")
		}
		if err != nil {
			s.log.Warn("store: redis: a published ticket key does not decode; ignored", "field", field, "err", err)
			bad = append(bad, field)
			continue
		}
		keys = append(keys, k)
	}
	return keys, bad, nil
}

// awaitPublisher reloads the schedule a few times, briefly, while another
// server holds the publishing lock, until what it publishes is in.
func (s *KeySync) awaitPublisher(ctx context.Context) error {
	for range 8 {
		select {
		case <-time.After(publisherPoll):
		case <-ctx.Done():
			return nil // the next sync takes it
		}
		keys, bad, err := s.load(ctx)
		if err != nil {
			return err
		}
		if err := s.ring.SyncKeys(keys); err != nil {
			return err
		}
		if !s.needsWork(keys, bad, s.ring.Now()) {
			return nil
		}
	}
	return nil
}

// publisherPoll is how often awaitPublisher looks again.
const publisherPoll = 100 * time.Millisecond

// lock takes the publishing lock; it returns "" when another server holds
// it.
func (s *KeySync) lock(ctx context.Context) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(ctx, s.r.timeout)
	defer cancel()
	ok, err := s.r.c.SetNX(ctx, s.lockKey, token, max(10*s.r.timeout, 2*time.Second)).Result()
	if err != nil {
		return "", fmt.Errorf("store: redis: ticket key lock: %w", err)
	}
	if !ok {
		return "", nil
	}
	return token, nil
}

var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func (s *KeySync) unlock(token string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.r.timeout)
	defer cancel()
	if err := unlockScript.Run(ctx, s.r.c, []string{s.lockKey}, token).Err(); err != nil {
		s.log.Debug("store: redis: releasing the ticket key lock", "err", err)
	}
}
