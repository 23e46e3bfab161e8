package router

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config fields left zero.
const (
	DefaultAdminAddr       = "127.0.0.1:9180"
	DefaultHealthPath      = "/healthz"
	DefaultHealthInterval  = time.Second
	DefaultHealthTimeout   = time.Second
	DefaultHealthFailures  = 3
	DefaultDrainTimeout    = 30 * time.Second
	DefaultDialTimeout     = 2 * time.Second
	DefaultResponseTimeout = 60 * time.Second
	DefaultBodyReadTimeout = 60 * time.Second
	DefaultRetryBodyLimit  = 64 << 10
	DefaultTokenFileName   = "router.token"
)

// Config configures a Router. Only StateFile is required by New; Run also
// needs Listen.
type Config struct {
	// Listen is the address of the proxy listener (used by Run).
	Listen string
	// Admin is the address of the admin API listener (used by Run);
	// default DefaultAdminAddr, loopback only.
	Admin string
	// StateFile is where the routing state is persisted (required).
	StateFile string
	// TokenFile holds the admin bearer token; default "router.token" next to
	// StateFile. Created with mode 0600 on first start, reused after.
	TokenFile string
	// HealthPath is requested with GET on each backend; 2xx means ready.
	HealthPath string
	// HealthInterval is the time between two checks of one backend.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check.
	HealthTimeout time.Duration
	// HealthFailures is the number of consecutive failed checks that take a
	// healthy backend out of rotation (one success puts it back).
	HealthFailures int
	// DrainTimeout bounds a drain when the caller gives no timeout, and the
	// graceful shutdown in Run.
	DrainTimeout time.Duration
	// DialTimeout bounds connecting to a backend.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response headers.
	ResponseHeaderTimeout time.Duration
	// BodyReadTimeout bounds each read of a client's request body (the
	// time between two pieces of it, not the whole upload), as nginx's
	// client_body_timeout does; default DefaultBodyReadTimeout. A client
	// that sends nothing for that long gets 408 and its connection closed,
	// and the backend connection it held is closed too.
	BodyReadTimeout time.Duration
	// MaxConns caps the client connections open at once (0: no cap). At
	// the cap the router stops accepting: new clients wait in the
	// listener's backlog until a connection closes.
	MaxConns int
	// NoRetry disables the single retry on another backend of a request
	// the backend provably did not process (retry is on by default; see
	// the package documentation for the rule).
	NoRetry bool
	// RetryBodyLimit is how much of a request body the router keeps while
	// sending it, so that the request can be sent again when the backend
	// closed the connection without reading it; default
	// DefaultRetryBodyLimit (64 KiB), negative keeps none. A request whose
	// body is longer is still retried when the connection was refused
	// (nothing was sent), but not once part of its body has gone to a
	// backend that died.
	RetryBodyLimit int
	// TrustForwardedHeaders keeps the client's X-Forwarded-For and appends
	// the peer address to it (set it when another proxy is in front);
	// otherwise the header is replaced by the peer address.
	TrustForwardedHeaders bool
	// MetricsAuth requires the admin token on GET /metrics too.
	MetricsAuth bool
	// Registry receives the router's metrics. Nil: the router makes its own
	// registry (with Go and process collectors). Never the global one.
	Registry *prometheus.Registry
	// Logger receives operational logs (never the token). Nil: slog.Default().
	Logger *slog.Logger

	// quickAnswer is how long a backend's answer is awaited before the
	// client's context is watched (see roundTrip); 0 means 100 ms. Tests
	// shorten it to exercise the slow path.
	quickAnswer time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.StateFile == "" {
		return c, errors.New("router config: state file path is required")
	}
	if c.Admin == "" {
		c.Admin = DefaultAdminAddr
	}
	if c.TokenFile == "" {
		c.TokenFile = filepath.Join(filepath.Dir(c.StateFile), DefaultTokenFileName)
	}
	if c.HealthPath == "" {
		c.HealthPath = DefaultHealthPath
	}
	if c.HealthPath[0] != '/' {
		return c, fmt.Errorf("router config: health path %q must start with /", c.HealthPath)
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.HealthFailures <= 0 {
		c.HealthFailures = DefaultHealthFailures
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ResponseHeaderTimeout <= 0 {
		c.ResponseHeaderTimeout = DefaultResponseTimeout
	}
	if c.BodyReadTimeout <= 0 {
		c.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.RetryBodyLimit == 0 {
		c.RetryBodyLimit = DefaultRetryBodyLimit
	}
	if c.MaxConns < 0 {
		return c, fmt.Errorf("router config: max conns %d must be 0 (no cap) or more", c.MaxConns)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.quickAnswer <= 0 {
		c.quickAnswer = defaultQuickAnswer
	}
	return c, nil
}
