// Package etcdstate keeps flightdeck's environment locks and run journals
// in etcd, so that several control machines share them: a lock held by a
// lease (a crashed controller's lock frees itself), fencing of every
// journal write by the lock's revision, the journal as ordered append-only
// keys, and etcd's watch to follow a run from another machine.
//
// Keys, under the configured prefix (default /flightdeck):
//
//	<prefix>/locks/<env>                    the holder (JSON), attached to its lease
//	<prefix>/journal/<run>/<first seq>      one committed batch of events (JSON lines)
//	<prefix>/runs/<run>                     the run's summary (written at start and finish)
//	<prefix>/unlocks/<env>/<time>-<random>  a broken lock: who broke it, whose it was, why
//
// This package is the only one that imports the etcd client (and gRPC).
package etcdstate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Config says how to reach etcd and where flightdeck's keys live.
type Config struct {
	// Endpoints are the members' client addresses (host:port, or URLs).
	Endpoints []string
	// Prefix is the key prefix of every flightdeck key (default /flightdeck).
	Prefix string
	// Username and Password authenticate with etcd's own users.
	Username, Password string
	// CA verifies the members' certificates (TLS); Cert and Key are a
	// client certificate. Any of them turns TLS on.
	CA, Cert, Key string
	// ServerName overrides the name checked in the members' certificates.
	ServerName string
	// Lease is the lock lease's time to live (default 10 s, at least 2 s):
	// a dead controller's lock frees itself after it, and a controller cut
	// off from etcd stops switching hosts before it.
	Lease time.Duration
	// DialTimeout bounds connecting at Open (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds one attempt of a request (default 3 s);
	// journal writes and fences retry until etcd answers.
	RequestTimeout time.Duration
	// OnStall, when set, is told when a journal write or a fence starts
	// waiting for etcd (and again when the wait ends, with Over set).
	OnStall func(Stall)
}

// Stall describes a wait for etcd.
type Stall struct {
	// What waits, e.g. "journal write of run X" or "lock lease of production".
	What  string
	Since time.Time
	// Err is the last error etcd's client reported.
	Err error
	// Over is set when the wait ended (Err is then nil, or final).
	Over bool
}

// DefaultPrefix is the key prefix used when the configuration names none.
const DefaultPrefix = "/flightdeck"

// DefaultLease is the lock lease's default time to live.
const DefaultLease = 10 * time.Second

// Store is a connection to etcd holding flightdeck's state.
type Store struct {
	cli *clientv3.Client
	cfg Config
	pfx string
	// ctx ends when the store is closed (lease grants and renewals).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*session // by environment
	// releasing holds, by environment, a channel closed once the last
	// background release of its lock is done.
	releasing map[string]chan struct{}
}

// UnreachableError says that no endpoint answered (or the TLS handshake
// failed) when the store was opened.
type UnreachableError struct {
	Endpoints []string
	Err       error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("etcd unreachable at %s: %v", strings.Join(e.Endpoints, ", "), e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError says that etcd refused the credentials.
type AuthError struct {
	Endpoints []string
	User      string
	Err       error
}

func (e *AuthError) Error() string {
	who := "without credentials"
	if e.User != "" {
		who = "as user " + e.User
	}
	return fmt.Sprintf("etcd at %s refused access %s: %v", strings.Join(e.Endpoints, ", "), who, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Validate checks a configuration without connecting.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd: no endpoints")
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return errors.New("etcd: empty endpoint")
		}
	}
	if p := c.Prefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/")) {
		return fmt.Errorf("etcd prefix %q: it must start with / and not end with /", p)
	}
	if c.Lease != 0 && c.Lease < 2*time.Second {
		return fmt.Errorf("etcd lease %s: at least 2s (etcd extends shorter leases)", c.Lease)
	}
	if c.Lease%time.Second != 0 {
		return fmt.Errorf("etcd lease %s: whole seconds only", c.Lease)
	}
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("etcd: a client certificate needs both cert and key")
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("etcd: username and password go together")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 3 * time.Second
	}
	return c
}

func (c Config) tlsConfig() (*tls.Config, error) {
	tlsOn := c.CA != "" || c.Cert != ""
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			tlsOn = true
		}
	}
	if !tlsOn {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		b, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Open connects to etcd and checks, with one read under the prefix, that
// the cluster answers and accepts the credentials. It fails with
// *UnreachableError or *AuthError (and touches nothing) otherwise.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	eps := make([]string, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		eps[i] = strings.TrimSpace(ep)
	}
	cfg.Endpoints = eps
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: eps, DialTimeout: cfg.DialTimeout, TLS: tc,
		Username: cfg.Username, Password: cfg.Password,
		// A dead connection (a partition, not a reset) is noticed within
		// a few seconds, so that requests go to another member.
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, classify(cfg, err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, cfg: cfg, pfx: cfg.Prefix, ctx: sctx, cancel: scancel, sessions: map[string]*session{}, releasing: map[string]chan struct{}{}}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, s.pfx+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		scancel()
		cli.Close()
		return nil, classify(cfg, err)
	}
	return s, nil
}

func classify(cfg Config, err error) error {
	if isAuthErr(err) {
		return &AuthError{Endpoints: cfg.Endpoints, User: cfg.Username, Err: err}
	}
	return &UnreachableError{Endpoints: cfg.Endpoints, Err: err}
}

func isAuthErr(err error) bool {
	for _, e := range []error{rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty,
		rpctypes.ErrAuthNotEnabled, rpctypes.ErrInvalidAuthToken, rpctypes.ErrInvalidAuthMgmt, rpctypes.ErrAuthOldRevision} {
		if errors.Is(err, e) || rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(e) {
			return true
		}
	}
	return false
}

// Close stops renewing the store's leases, revokes those that hold no
// lock (a lock still held frees itself when its lease expires, as if this
// controller had died) and closes the connection.
func (s *Store) Close() error {
	s.closeSessions()
	s.cancel()
	return s.cli.Close()
}

// Describe names where the state lives, for messages.
func (s *Store) Describe() string {
	return fmt.Sprintf("etcd at %s (prefix %s)", strings.Join(s.cfg.Endpoints, ", "), s.pfx)
}

// Endpoints are the configured endpoints.
func (s *Store) Endpoints() []string { return s.cfg.Endpoints }

// Client is the etcd client (tests and benchmarks).
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) lockKey(env string) string { return s.pfx + "/locks/" + env }
func (s *Store) runKey(run string) string  { return s.pfx + "/runs/" + run }
func (s *Store) journalPrefix(run string) string {
	return s.pfx + "/journal/" + run + "/"
}
func (s *Store) journalKey(run string, seq uint64) string {
	return fmt.Sprintf("%s%020d", s.journalPrefix(run), seq)
}
func (s *Store) unlockPrefix(env string) string { return s.pfx + "/unlocks/" + env + "/" }

// request runs fn with the per-attempt timeout.
func (s *Store) request(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	return fn(ctx)
}

// retry runs fn until it succeeds, fails finally, or ctx ends; while it
// waits it reports a Stall. A cancelled ctx still gets one attempt, so
// that an interrupted run journals what it did when etcd is up.
func (s *Store) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var since time.Time
	var stalled bool
	backoff := 100 * time.Millisecond
	for {
		actx := ctx
		if ctx.Err() != nil {
			actx = context.WithoutCancel(ctx)
		}
		err := s.request(actx, fn)
		if err == nil || !retryable(err) {
			if stalled && s.cfg.OnStall != nil {
				s.cfg.OnStall(Stall{What: what, Since: since, Err: err, Over: true})
			}
			return err
		}
		if !stalled {
			stalled, since = true, time.Now()
			if s.cfg.OnStall != nil {
				s.cfg.OnStall(Stall{What: what, Since: since, Err: err})
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, context.Cause(ctx))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// errFinal marks an error that retrying cannot cure.
type errFinal struct{ err error }

func (e errFinal) Error() string { return e.err.Error() }
func (e errFinal) Unwrap() error { return e.err }

func final(err error) error { return errFinal{err} }

func retryable(err error) bool {
	var f errFinal
	if errors.As(err, &f) || isAuthErr(err) {
		return false
	}
	for _, e := range []error{rpctypes.ErrRequestTooLarge, rpctypes.ErrTooManyOps, rpctypes.ErrKeyNotFound, rpctypes.ErrCompacted} {
		if errors.Is(err, e) || rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(e) {
			return false
		}
	}
	return true
}
