// Package service is the demo web service: the process each host slot of
// the demo fleet runs (the flightdeck binary in a hidden mode). It serves a
// small JSON body on "/", a readiness check on /healthz and its release on
// /version, and misbehaves on purpose as the release's knobs.json says, so
// that the demo can ship good and bad releases.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// ReleaseHeader is set on every response to the release id, so that probes
// and routers can attribute requests.
const ReleaseHeader = "X-Release"

// DefaultShutdownTimeout bounds how long in-flight requests may take to
// finish after the service was asked to stop.
const DefaultShutdownTimeout = 30 * time.Second

// CrashExitCode is the process exit code for ErrCrash.
const CrashExitCode = 3

// ErrCrash is returned by Run when the crash_after knob fired. The caller
// should exit the process at once with CrashExitCode.
var ErrCrash = errors.New("demo service: crash_after knob fired")

// Config configures one demo service process.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:8080". Ignored when
	// Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr. Run
	// closes it.
	Listener net.Listener
	// ReleaseDir is the release directory; knobs.json is read from it.
	ReleaseDir string
	// FollowLink treats ReleaseDir as a link (Capistrano's current) that is
	// read again on every request: when it points at another release, the
	// service serves that release's knobs and id without a restart, the way
	// an app that reads its files through current does after an atomic
	// symlink switch.
	FollowLink bool
	// Name names the host/slot in the "/" body. Default: the listen address.
	Name string
	// CacheNamespaceEnv names the environment variable reported as
	// cache_namespace on /version. Default "CACHE_NAMESPACE".
	CacheNamespaceEnv string
	// ShutdownTimeout bounds graceful shutdown. Default 30 s.
	ShutdownTimeout time.Duration
	// Log receives the service's own log lines (start, ready, shutdown);
	// requests are not logged. Default: discarded.
	Log io.Writer
	// Getenv reads the environment. Default os.Getenv.
	Getenv func(string) string
}

// ExitCode maps Run's result to a process exit code: 0 for a clean stop,
// CrashExitCode for ErrCrash, 1 for anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrCrash):
		return CrashExitCode
	default:
		return 1
	}
}

// ReleaseID is the release the service reports: env RELEASE_VERSION when
// set, else the base name of the release directory.
func ReleaseID(releaseDir string, getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv("RELEASE_VERSION"); v != "" {
		return v
	}
	return filepath.Base(filepath.Clean(releaseDir))
}

// phase is the life-cycle phase /healthz reports.
type phase int32

const (
	phaseStarting phase = iota
	phaseReady
	phaseStopping
)

// view is the release a service serves: its id and knobs.
type view struct {
	release string
	knobs   Knobs
	target  string // the link target it was read from (FollowLink)
}

// server is the state of one running service.
type server struct {
	link      string // FollowLink: the link to read per request
	cur       atomic.Pointer[view]
	name      string
	cacheNS   string
	startedAt time.Time
	log       *slog.Logger

	phase    atomic.Int32
	readyAt  atomic.Int64 // unix nanoseconds; valid once phase >= phaseReady
	requests atomic.Uint64
	inFlight atomic.Int64
}

// Run serves the demo service until ctx ends (graceful shutdown: /healthz
// turns 503, the listener closes, in-flight requests get up to
// ShutdownTimeout to finish) or the crash_after knob fires (connections
// are cut and ErrCrash is returned). Invalid knobs end Run before it listens.
func Run(ctx context.Context, cfg Config) error {
	if cfg.ReleaseDir == "" {
		return errors.New("demo service: release dir is required")
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	target := ""
	if cfg.FollowLink {
		t, err := os.Readlink(cfg.ReleaseDir)
		if err != nil {
			return fmt.Errorf("demo service: reading link %s: %w", cfg.ReleaseDir, err)
		}
		target = t
		getenv = func(k string) string {
			if k == "RELEASE_VERSION" {
				return ""
			}
			return cfg.Getenv(k)
		}
		if cfg.Getenv == nil {
			getenv = func(k string) string {
				if k == "RELEASE_VERSION" {
					return ""
				}
				return os.Getenv(k)
			}
		}
	}
	release := ReleaseID(resolveLink(cfg.ReleaseDir, target), getenv)
	if release == "" || release == "." || release == string(filepath.Separator) ||
		strings.ContainsFunc(release, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("demo service: unusable release id %q", release)
	}
	knobs, err := LoadKnobs(cfg.ReleaseDir)
	if err != nil {
		return fmt.Errorf("demo service: %w", err)
	}
	nsEnv := cfg.CacheNamespaceEnv
	if nsEnv == "" {
		nsEnv = "CACHE_NAMESPACE"
	}
	shutdownTimeout := cfg.ShutdownTimeout
	if shutdownTimeout <= 0 {
		shutdownTimeout = DefaultShutdownTimeout
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logw, nil))

	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("demo service: listening on %q: %w", cfg.Addr, err)
		}
	}
	name := cfg.Name
	if name == "" {
		name = ln.Addr().String()
	}

	s := &server{
		name:      name,
		cacheNS:   getenv(nsEnv),
		startedAt: time.Now(),
		log:       log,
	}
	if cfg.FollowLink {
		s.link = cfg.ReleaseDir
	}
	s.cur.Store(&view{release: release, knobs: knobs, target: target})
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("demo service listening", "addr", ln.Addr().String(), "release", release,
		"startup_delay", knobs.StartupDelay, "crash_after", knobs.CrashAfter)

	markReady := func() {
		s.readyAt.Store(time.Now().UnixNano())
		if s.phase.CompareAndSwap(int32(phaseStarting), int32(phaseReady)) {
			log.Info("demo service ready", "release", release)
		}
	}
	if knobs.StartupDelay > 0 {
		ready := time.AfterFunc(knobs.StartupDelay, markReady)
		defer ready.Stop()
	} else {
		markReady()
	}

	var crash <-chan time.Time
	if knobs.CrashAfter > 0 {
		t := time.NewTimer(knobs.CrashAfter)
		defer t.Stop()
		crash = t.C
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		s.phase.Store(int32(phaseStopping))
		return fmt.Errorf("demo service: serving %s: %w", ln.Addr(), err)
	case <-crash:
		s.phase.Store(int32(phaseStopping))
		log.Error("demo service crashing (crash_after knob)", "release", release)
		_ = srv.Close()
		<-serveErr
		return ErrCrash
	case <-ctx.Done():
	}

	s.phase.Store(int32(phaseStopping))
	log.Info("demo service shutting down", "release", release, "in_flight", s.inFlight.Load())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-serveErr
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("demo service: graceful shutdown within %v: %w", shutdownTimeout, err)
	}
	log.Info("demo service stopped", "release", release)
	return nil
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveRoot)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("GET /version", s.serveVersion)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ReleaseHeader, s.view().release)
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// healthBody is the /healthz answer.
type healthBody struct {
	Status   string `json:"status"` // starting | ok | stopping
	Release  string `json:"release"`
	InFlight int64  `json:"in_flight"` // "/" requests being served
}

func (s *server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	b := healthBody{Release: s.view().release, InFlight: s.inFlight.Load()}
	status := http.StatusServiceUnavailable
	switch phase(s.phase.Load()) {
	case phaseStarting:
		b.Status = "starting"
	case phaseReady:
		b.Status, status = "ok", http.StatusOK
	default:
		b.Status = "stopping"
	}
	writeJSON(w, status, b)
}

// versionBody is the /version answer.
type versionBody struct {
	Release        string    `json:"release"`
	CacheNamespace string    `json:"cache_namespace"`
	StartedAt      time.Time `json:"started_at"`
}

func (s *server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, versionBody{Release: s.view().release, CacheNamespace: s.cacheNS, StartedAt: s.startedAt})
}

// rootBody is the "/" answer.
type rootBody struct {
	Release string `json:"release"`
	Host    string `json:"host"`
	Error   string `json:"error,omitempty"`
}

func (s *server) serveRoot(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	v := s.view()
	if phase(s.phase.Load()) == phaseStarting {
		writeJSON(w, http.StatusServiceUnavailable, rootBody{Release: v.release, Host: s.name, Error: "starting"})
		return
	}
	if d := v.delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	n := s.requests.Add(1)
	since := time.Since(time.Unix(0, s.readyAt.Load()))
	if v.knobs.failAt(n, since) {
		writeJSON(w, http.StatusInternalServerError, rootBody{Release: v.release, Host: s.name, Error: "injected failure (error_rate knob)"})
		return
	}
	writeJSON(w, http.StatusOK, rootBody{Release: v.release, Host: s.name})
}

// view returns the release being served; with FollowLink it reads the link
// and loads the release it points at when that changed.
func (s *server) view() *view {
	v := s.cur.Load()
	if s.link == "" {
		return v
	}
	t, err := os.Readlink(s.link)
	if err != nil || t == v.target {
		return v
	}
	dir := resolveLink(s.link, t)
	k, err := LoadKnobs(dir)
	if err != nil {
		s.log.Warn("keeping the previous release: new release's knobs are unusable", "release", filepath.Base(dir), "err", err)
		return v
	}
	nv := &view{release: filepath.Base(filepath.Clean(dir)), knobs: k, target: t}
	if s.cur.CompareAndSwap(v, nv) {
		s.log.Info("now serving", "release", nv.release)
		return nv
	}
	return s.cur.Load()
}

// resolveLink is the directory a link's target names (relative to the link's dir).
func resolveLink(link, target string) string {
	if target == "" {
		return link
	}
	if filepath.IsAbs(target) {
		return target
	}
	return filepath.Join(filepath.Dir(link), target)
}

// delay is the latency knob plus a random share of the jitter knob.
func (v *view) delay() time.Duration {
	d := v.knobs.Latency
	if j := v.knobs.LatencyJitter; j > 0 {
		d += rand.N(j)
	}
	return d
}
