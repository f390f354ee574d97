package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of [RedisConfig].
const (
	DefaultRedisPrefix   = "dtlsresume:"
	DefaultRedisTimeout  = 250 * time.Millisecond
	DefaultRedisMaxValue = 64 << 10
)

// RedisConfig configures a [Redis] store. The zero value is usable.
type RedisConfig struct {
	// Prefix starts every Redis key the store uses; servers that share
	// sessions use the same prefix. Default DefaultRedisPrefix.
	Prefix string
	// Key, if set, is a 32-byte operator key: values (master secrets) and
	// shared ticket keys are then sealed as the file store seals them, and
	// record keys are stored as keyed hashes, so that Redis and its backups
	// hold no secret in the clear; records and ticket keys that do not
	// authenticate under it are refused or ignored. Every server sharing
	// the store needs the same key. Without it Redis holds master secrets
	// and ticket keys in the clear, and anyone who can write to it can
	// forge tickets for any identity: leave it out only by decision (the
	// command line's --store-insecure), and protect Redis (private network,
	// AUTH, TLS with rediss://).
	Key []byte
	// Timeout bounds each call (on top of the caller's context); default
	// DefaultRedisTimeout. A Redis that is down or slow costs a handshake
	// at most this long before it goes on as a full handshake.
	Timeout time.Duration
	// MaxValueBytes refuses larger values with ErrTooLarge; default
	// DefaultRedisMaxValue.
	MaxValueBytes int
	// PoolSize is the number of connections kept; default go-redis's
	// (10 per CPU).
	PoolSize int
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Redis is a [Store] in a Redis server, shared by every server process that
// uses the same server and prefix: a session stored by one is found by the
// others. Records are Redis strings with a TTL (SET PX), so Redis expires
// them and bounds them by its own maxmemory policy (use an LRU or TTL
// policy, e.g. volatile-lru). Every call is bounded by the configured
// Timeout; when Redis is down calls fail fast with an error, and go-redis
// reconnects by itself when it is back. Safe for concurrent use.
type Redis struct {
	c       *redis.Client
	prefix  string
	sealer  *sealer // nil: values stored as they are
	timeout time.Duration
	maxVal  int
	log     *slog.Logger
}

var _ Store = (*Redis)(nil)

// NewRedis connects to the Redis server at url (redis://[:PASSWORD@]HOST:PORT[/DB],
// or rediss:// for TLS; see go-redis's ParseURL). A Redis that cannot be
// reached now is not an error: it is logged, the store's calls fail until
// it is reachable, and the server does full handshakes meanwhile. ctx bounds
// the first ping.
//
// Errors and log lines never quote the URL's user name or password
// ([RedactURL]).
func NewRedis(ctx context.Context, url string, cfg RedisConfig) (*Redis, error) {
	opt, err := parseRedisURL(url)
	if err != nil {
		return nil, err
	}
	r := &Redis{prefix: cfg.Prefix, timeout: cfg.Timeout, maxVal: cfg.MaxValueBytes, log: cfg.Logger}
	if r.prefix == "" {
		r.prefix = DefaultRedisPrefix
	}
	if r.timeout <= 0 {
		r.timeout = DefaultRedisTimeout
	}
	if r.maxVal <= 0 {
		r.maxVal = DefaultRedisMaxValue
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Key != nil {
		if r.sealer, err = newSealer(cfg.Key); err != nil {
			return nil, err
		}
	}
	// Fail fast: one dial attempt, one retry of a command on a broken
	// pooled connection (after Redis restarted), everything bounded by the
	// call's context.
	opt.DialTimeout = r.timeout
	opt.ReadTimeout = r.timeout
	opt.WriteTimeout = r.timeout
	opt.PoolTimeout = r.timeout
	opt.ContextTimeoutEnabled = true
	opt.DialerRetries = 1
	opt.MaxRetries = 1
	opt.MinRetryBackoff = 5 * time.Millisecond
	opt.MaxRetryBackoff = 20 * time.Millisecond
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if cfg.PoolSize > 0 {
		opt.PoolSize = cfg.PoolSize
	}
	routeRedisLog(r.log)
	r.c = redis.NewClient(opt)
	if err := r.Ping(ctx); err != nil {
		r.log.Warn("store: redis not reachable yet; full handshakes until it is", "addr", opt.Addr, "err", err)
	}
	return r, nil
}

// CheckRedisURL reports whether [NewRedis] accepts url, without connecting;
// its error, like NewRedis's, does not quote the URL's user name or
// password.
func CheckRedisURL(url string) error {
	_, err := parseRedisURL(url)
	return err
}

// parseRedisURL is go-redis's ParseURL with errors that keep the URL's
// userinfo out: net/url's errors quote the whole URL, and go-redis's quote
// the path or query, where a malformed password ends up (a "/" or "?" in it
// ends the authority early). So a URL with userinfo is parsed again with
// the userinfo redacted, and that error is the one reported.
func parseRedisURL(u string) (*redis.Options, error) {
	opt, err := redis.ParseURL(u)
	if err == nil {
		return opt, nil
	}
	red := RedactURL(u)
	if red == u {
		return nil, fmt.Errorf("store: redis URL: %w", err)
	}
	if _, err := redis.ParseURL(red); err != nil {
		return nil, fmt.Errorf("store: redis URL: %s", err)
	}
	return nil, errors.New("store: redis URL: the user name or password does not parse (percent-encode the characters : / ? # [ ] @ % in it)")
}

// RedactURL returns u as it may be shown in a log or an error: everything
// between the scheme and the last "@" (a URL's userinfo, such as a Redis
// password, or any part of one that does not parse) becomes "***". A u
// without "@" is returned as it is. It works on any string, URL or not.
func RedactURL(u string) string {
	at := strings.LastIndexByte(u, '@')
	if at < 0 {
		return u
	}
	return u[:schemeEnd(u[:at])] + "***" + u[at:]
}

// schemeEnd is where what follows a leading "scheme:" or "scheme://" of s
// starts; 0 if s does not start with a scheme.
func schemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			if strings.HasPrefix(s[i:], "://") {
				return i + 3
			}
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: redis: ping: %w", err)
	}
	return nil
}

// recordKey is the Redis key of a record.
func (r *Redis) recordKey(key []byte) string {
	if r.sealer != nil {
		id := r.sealer.keyID(domRecord, key)
		return r.prefix + "s:" + string(id[:])
	}
	return r.prefix + "s:" + string(key)
}

// aad binds a sealed value to its Redis key.
func (r *Redis) aad(rkey string) []byte { return []byte("redis\x00" + rkey) }

// Get returns the value under key, or an error wrapping ErrNotFound.
func (r *Redis) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rkey := r.recordKey(key)
	v, err := r.c.Get(ctx, rkey).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: redis: get: %w", err)
	}
	if r.sealer != nil {
		p, err := r.sealer.open(v, r.aad(rkey))
		if err != nil {
			r.log.Warn("store: redis: a record failed authentication; ignored")
			return nil, fmt.Errorf("store: redis: get: %w", err)
		}
		return p, nil
	}
	return v, nil
}

// Put stores value under key for ttl (at millisecond precision, at least
// one millisecond).
func (r *Redis) Put(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	if len(value) > r.maxVal {
		return fmt.Errorf("store: Put: value of %d bytes exceeds %d: %w", len(value), r.maxVal, ErrTooLarge)
	}
	ttl = max(ttl.Round(time.Millisecond), time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rkey := r.recordKey(key)
	v := value
	if r.sealer != nil {
		var err error
		if v, err = r.sealer.seal(nil, value, r.aad(rkey)); err != nil {
			return err
		}
	}
	if err := r.c.Set(ctx, rkey, v, ttl).Err(); err != nil {
		return fmt.Errorf("store: redis: set: %w", err)
	}
	return nil
}

// Delete removes the record under key.
func (r *Redis) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.c.Del(ctx, r.recordKey(key)).Err(); err != nil {
		return fmt.Errorf("store: redis: del: %w", err)
	}
	return nil
}

// MemoryUsage reports the bytes Redis uses for the record under key (MEMORY
// USAGE), for measurements.
func (r *Redis) MemoryUsage(ctx context.Context, key []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	n, err := r.c.MemoryUsage(ctx, r.recordKey(key), 0).Result()
	if err != nil {
		return 0, fmt.Errorf("store: redis: memory usage: %w", err)
	}
	return n, nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.c.Close() }

// go-redis logs through one process-wide logger, to stderr by default, and
// would log every failed dial while Redis is down. The stores route it to
// the Logger of the latest NewRedis, at debug level: the store's own
// warnings say what matters.
var (
	redisLogOnce sync.Once
	redisLog     atomic.Pointer[slog.Logger]
)

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.Load(); l != nil {
		l.Debug("store: go-redis: " + fmt.Sprintf(format, v...))
	}
}

func routeRedisLog(l *slog.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}
