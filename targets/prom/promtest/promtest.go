// Package promtest starts a real Prometheus server (the Debian package
// "prometheus", binary prometheus) on 127.0.0.1 for tests, scraping
// the given targets at a short interval, with its storage in a temporary
// directory. When the binary is missing the test is skipped, unless the
// environment has CI=true, in which case it fails.
package promtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flightdeck/internal/freeport"
)

// Server is a running Prometheus.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:39123.
	URL string
	log *syncBuffer
}

// Binary finds the prometheus binary, or skips (fails under CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/prometheus"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	msg := "prometheus binary not found: install the Debian package prometheus (apt-get install prometheus)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Start runs Prometheus scraping targets (host:port, path /metrics) every
// interval. It is stopped at the end of the test.
func Start(t testing.TB, interval time.Duration, targets ...string) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", promDur(interval), promDur(interval))
	fmt.Fprintf(&cfg, "scrape_configs:\n  - job_name: flightdeck\n    scrape_interval: %s\n    scrape_timeout: %s\n    static_configs:\n      - targets: [%s]\n",
		promDur(interval), promDur(interval), quoteAll(targets))
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// A port taken by someone else between picking it and Prometheus's
	// bind makes it exit: start again on another port.
	var lastErr error
	for attempt := range 3 {
		s, err := start(t, bin, cfgFile, filepath.Join(dir, fmt.Sprintf("data-%d", attempt)))
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("prometheus not ready: %v", lastErr)
	return nil
}

// start runs one Prometheus on a free port until the test ends, and waits
// until it is ready.
func start(t testing.TB, bin, cfgFile, data string) (*Server, error) {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, err
	}
	addr := addrs[0]
	log := &syncBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--web.listen-address="+addr,
		"--storage.tsdb.path="+data,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting prometheus: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &Server{URL: "http://" + addr, log: log}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, s.URL, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w\n%s", err, log.String())
	}
	t.Cleanup(stop)
	return s, nil
}

// Log returns what the server printed so far (for failure messages).
func (s *Server) Log() string { return s.log.String() }

func waitReady(ctx context.Context, base string, exited <-chan error) error {
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("prometheus exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func promDur(d time.Duration) string {
	return fmt.Sprintf("%dms", max(1, d.Milliseconds()))
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// syncBuffer collects the server's output, bounded to its last 64 KiB.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// WaitUp waits until targets scrape targets are up and were scraped at
// least twice, so that rate() over a short window has samples to work with.
func (s *Server) WaitUp(t testing.TB, targets int) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(s.URL + "/api/v1/query?query=" + url.QueryEscape("count((up == 1) and (count_over_time(up[1m]) >= 2))"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), fmt.Sprintf(`"%d"]`, targets)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never scraped %d target(s) twice: %v\n%s", targets, err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
