// Package probe sends synthetic HTTP traffic at a constant rate during a
// deploy window and reports, per release, whether the deploy was hitless:
// failed requests by class, p50/p99 latency, the longest gap between two
// successful responses, and the time from a mark (say "rollback-start") to
// the first success of a release (the measured RTO).
//
// The generator is open loop: requests follow a fixed timetable, each in
// its own goroutine, so a stalled backend cannot slow the sender down and
// hide the stall. At most MaxInFlight requests run at once; a request due
// while the cap is reached is not queued but counted as failed (dropped).
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for Config.
const (
	DefaultTimeout = 2 * time.Second
	// DefaultMaxDuration bounds a probe whose Config.Duration is 0, so that
	// a forgotten probe stops by itself.
	DefaultMaxDuration = time.Hour
	// DefaultReleaseHeader is the response header naming the release that
	// served a request.
	DefaultReleaseHeader = "X-Release"
	// UnknownRelease attributes requests without a release (no response,
	// no header, dropped).
	UnknownRelease = "unknown"
	// OtherRelease collects releases beyond maxReleases distinct names.
	OtherRelease = "other"

	maxReleases    = 64
	maxMarks       = 256
	maxBodyBytes   = 1 << 20
	maxRate        = 100_000
	minMaxInFlight = 16
)

// Config configures a probe.
type Config struct {
	// URL is requested with GET. Required (http or https).
	URL string
	// Rate is the number of requests per second. Required.
	Rate float64
	// Timeout bounds each request, body included. Default 2 s.
	Timeout time.Duration
	// MaxInFlight caps concurrent requests; requests due beyond it are
	// counted as dropped. Default: twice what a backend that lets every
	// request time out would hold (2 × Rate × Timeout), plus 16, so only a
	// sender that fell far behind drops.
	MaxInFlight int
	// Duration is how long to send after Start. 0 means until Stop or the
	// context ends, and at most DefaultMaxDuration.
	Duration time.Duration
	// Release names the release that served a response. Default: the
	// X-Release header. An empty result counts as UnknownRelease.
	Release func(*http.Response) string
	// UserHeader, when set, gives every request this header with one of
	// Users synthetic user ids (u0, u1, …, round robin), so that sticky and
	// cohort routing see a realistic population.
	UserHeader string
	// Users is the number of distinct user ids (default 1000).
	Users int
	// Client sends the requests. Default: a client of its own with a
	// transport sized for MaxInFlight that does not follow redirects and
	// ignores proxy settings.
	Client *http.Client
}

// Failures counts failed requests by class.
type Failures struct {
	Status5xx   uint64 `json:"status_5xx"`
	Status4xx   uint64 `json:"status_4xx"`
	StatusOther uint64 `json:"status_other"` // 1xx and 3xx: anything not 2xx, 4xx or 5xx
	Refused     uint64 `json:"refused"`      // connection refused
	Reset       uint64 `json:"reset"`        // connection reset or closed mid-request
	Timeout     uint64 `json:"timeout"`      // the per-request timeout passed
	Dropped     uint64 `json:"dropped"`      // not sent: too many in flight
	Other       uint64 `json:"other"`        // any other transport error
}

// Total is the sum of all classes.
func (f Failures) Total() uint64 {
	return f.Status5xx + f.Status4xx + f.StatusOther + f.Refused + f.Reset + f.Timeout + f.Dropped + f.Other
}

// Stats describe the requests of one release, or of all of them.
type Stats struct {
	// Requests counts finished requests: succeeded, failed and dropped.
	Requests  uint64   `json:"requests"`
	Succeeded uint64   `json:"succeeded"` // 2xx with the whole body read
	Failed    uint64   `json:"failed"`
	Failures  Failures `json:"failures"`
	// Latencies are measured from the request's slot in the timetable to
	// the end of its body, over requests that got a response (any status).
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	MaxLatency time.Duration `json:"max_latency"`
	// FirstSuccess and LastSuccess are completion times (zero if none).
	FirstSuccess time.Time `json:"first_success"`
	LastSuccess  time.Time `json:"last_success"`
}

// ErrorRate is Failed/Requests (0 without requests).
func (s Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Failed) / float64(s.Requests)
}

// Mark is a named point in time recorded with Probe.Mark.
type Mark struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// Report is a snapshot of a probe's window.
type Report struct {
	// Start is when sending began; End is when it stopped, or the snapshot
	// time while the probe runs. Both are zero before Start.
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Running bool      `json:"running"`
	// Rate is the configured rate in requests per second.
	Rate     float64          `json:"rate"`
	Total    Stats            `json:"total"`
	Releases map[string]Stats `json:"releases"`
	// LongestGap is the longest time between two successive successful
	// responses (by completion time), ending at LongestGapEnd.
	LongestGap    time.Duration `json:"longest_gap"`
	LongestGapEnd time.Time     `json:"longest_gap_end"`
	// SinceLastSuccess is End minus the last success (or minus Start when
	// nothing succeeded yet): a stall still going on.
	SinceLastSuccess time.Duration `json:"since_last_success"`
	// InFlight is the number of requests running at snapshot time.
	InFlight int64 `json:"in_flight"`
	// Aborted counts requests cut by Stop or the context; they are in no
	// other count.
	Aborted uint64 `json:"aborted"`
	Marks   []Mark `json:"marks"`
}

type releaseStats struct {
	requests, succeeded uint64
	fail                Failures
	hist                Histogram
	first, last         time.Time
}

type markRecord struct {
	Mark
	firstSuccess map[string]time.Time
}

// Probe is a running (or finished) probe. All methods are safe for
// concurrent use.
type Probe struct {
	cfg      Config
	client   *http.Client
	ownsConn bool
	tmpl     *http.Request
	interval float64 // seconds between requests

	inFlight atomic.Int64
	seq      atomic.Uint64
	wg       sync.WaitGroup

	done chan struct{}

	mu          sync.Mutex
	started     bool
	cancel      context.CancelFunc
	start, end  time.Time
	running     bool
	total       releaseStats
	releases    map[string]*releaseStats
	lastSuccess time.Time
	longestGap  time.Duration
	gapEnd      time.Time
	aborted     uint64
	marks       []*markRecord
}

// New checks cfg and returns a probe ready to Start.
func New(cfg Config) (*Probe, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("probe: parsing URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("probe: URL %q: want http:// or https:// with a host", cfg.URL)
	}
	if !(cfg.Rate > 0 && cfg.Rate <= maxRate) {
		return nil, fmt.Errorf("probe: rate %v: want more than 0 and at most %d requests/s", cfg.Rate, maxRate)
	}
	if cfg.Timeout < 0 || cfg.Duration < 0 || cfg.MaxInFlight < 0 {
		return nil, errors.New("probe: timeout, duration and max in-flight must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Duration == 0 {
		cfg.Duration = DefaultMaxDuration
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = int(math.Ceil(2*cfg.Rate*cfg.Timeout.Seconds())) + minMaxInFlight
	}
	if cfg.Release == nil {
		cfg.Release = func(r *http.Response) string { return r.Header.Get(DefaultReleaseHeader) }
	}
	tmpl, err := http.NewRequest(http.MethodGet, cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("probe: building request: %w", err)
	}
	tmpl.Header.Set("User-Agent", "flightdeck-probe")
	p := &Probe{
		cfg:      cfg,
		client:   cfg.Client,
		tmpl:     tmpl,
		interval: 1 / cfg.Rate,
		done:     make(chan struct{}),
		releases: make(map[string]*releaseStats),
	}
	if p.client == nil {
		p.client = newClient(cfg)
		p.ownsConn = true
	}
	return p, nil
}

// maxConnsFor is how many connections the probe opens at most: enough
// for every request of 1/8 s (at least 256) to be in flight at once.
// Beyond it, a request waits for a connection (the wait counts in its
// latency, and past the timeout as a failure) instead of dialling a new
// one. Unbounded, a slow spell of the target turned into a dial storm:
// each request timed out closed its connection and each new one dialled,
// and on a loaded machine the probe's own dials and its Transport's lock
// (1,823 goroutines queued on it in one bench run) kept the target's
// process (the router, in the demo) from recovering: bench/hitless.sh
// lost tens of thousands of requests per blue/green deploy that way.
func maxConnsFor(rate float64) int {
	return max(256, int(math.Ceil(rate/8)))
}

// newClient returns a client tuned for many short concurrent requests to
// one host: idle connections for the whole in-flight cap, bounded dials
// and connections, no compression, no proxies, no redirects.
func newClient(cfg Config) *http.Client {
	maxConns := maxConnsFor(cfg.Rate)
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          cfg.MaxInFlight,
		MaxIdleConnsPerHost:   cfg.MaxInFlight,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Start begins sending. It returns at once; the probe stops when ctx ends,
// Stop is called, or Config.Duration has passed (requests then in flight
// may finish). A probe starts at most once.
func (p *Probe) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("probe: already started or stopped")
	}
	p.started = true
	runCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.start = time.Now()
	p.running = true
	go p.run(runCtx, cancel, p.start)
	return nil
}

// Stop ends the probe, cancels requests in flight (counted as aborted) and
// waits until every goroutine of the probe has returned. It is safe to call
// more than once, and before Start (the probe then never starts).
func (p *Probe) Stop() {
	p.mu.Lock()
	if !p.started {
		p.started = true
		close(p.done)
		p.mu.Unlock()
		return
	}
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	<-p.done
}

// Done is closed when the probe has stopped and its requests have finished.
func (p *Probe) Done() <-chan struct{} { return p.done }

func (p *Probe) run(ctx context.Context, cancel context.CancelFunc, start time.Time) {
	defer close(p.done)
	defer cancel()
	p.schedule(ctx, start)
	p.mu.Lock()
	p.end = time.Now()
	p.running = false
	p.mu.Unlock()
	p.wg.Wait()
	if p.ownsConn {
		p.client.CloseIdleConnections()
	}
}

// schedule fires request i at start + i/Rate until the window ends. After
// a late wake-up it fires every request that became due: the timetable,
// not the backend, sets the pace.
func (p *Probe) schedule(ctx context.Context, start time.Time) {
	// Requests whose slot falls inside the window; the small epsilon keeps
	// float rounding from adding a slot at the very end.
	total := int64(math.Ceil(p.cfg.Duration.Seconds()*p.cfg.Rate - 1e-9))
	slot := func(i int64) time.Time {
		return start.Add(time.Duration(float64(i) * p.interval * float64(time.Second)))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var sent int64
	for {
		due := min(total, int64(time.Since(start).Seconds()*p.cfg.Rate)+1)
		for ; sent < due; sent++ {
			if ctx.Err() != nil {
				return
			}
			p.fire(ctx, slot(sent))
		}
		if sent >= total {
			return
		}
		timer.Reset(time.Until(slot(sent)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

func (p *Probe) users() int {
	if p.cfg.Users > 0 {
		return p.cfg.Users
	}
	return 1000
}

// fire starts one request unless the in-flight cap is reached.
func (p *Probe) fire(ctx context.Context, slot time.Time) {
	if p.inFlight.Add(1) > int64(p.cfg.MaxInFlight) {
		p.inFlight.Add(-1)
		p.recordFailure(UnknownRelease, func(f *Failures) { f.Dropped++ }, 0, false)
		return
	}
	p.wg.Add(1)
	go p.do(ctx, slot, p.seq.Add(1))
}

// do sends one request and records its outcome.
func (p *Probe) do(ctx context.Context, slot time.Time, n uint64) {
	defer p.wg.Done()
	defer p.inFlight.Add(-1)
	rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req := p.tmpl.WithContext(rctx)
	if p.cfg.UserHeader != "" {
		req.Header = req.Header.Clone()
		req.Header.Set(p.cfg.UserHeader, "u"+strconv.FormatUint(n%uint64(p.users()), 10))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.recordError(ctx, UnknownRelease, err, 0, false)
		return
	}
	release := p.cfg.Release(resp)
	_, err = io.CopyN(io.Discard, resp.Body, maxBodyBytes)
	resp.Body.Close()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	latency := time.Since(slot)
	if err != nil {
		p.recordError(ctx, release, err, latency, true)
		return
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		p.recordSuccess(release, latency)
	case c >= 500:
		p.recordFailure(release, func(f *Failures) { f.Status5xx++ }, latency, true)
	case c >= 400:
		p.recordFailure(release, func(f *Failures) { f.Status4xx++ }, latency, true)
	default:
		p.recordFailure(release, func(f *Failures) { f.StatusOther++ }, latency, true)
	}
}

// recordError classifies a transport error; errors caused by the probe's
// own stop are counted as aborted only.
func (p *Probe) recordError(ctx context.Context, release string, err error, latency time.Duration, answered bool) {
	if ctx.Err() != nil {
		p.mu.Lock()
		p.aborted++
		p.mu.Unlock()
		return
	}
	var ne net.Error
	var class func(*Failures)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		class = func(f *Failures) { f.Timeout++ }
	case errors.Is(err, syscall.ECONNREFUSED):
		class = func(f *Failures) { f.Refused++ }
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		class = func(f *Failures) { f.Reset++ }
	default:
		class = func(f *Failures) { f.Other++ }
	}
	p.recordFailure(release, class, latency, answered)
}

// statsFor returns the stats of release; p.mu must be held.
func (p *Probe) statsFor(release string) *releaseStats {
	if release == "" {
		release = UnknownRelease
	}
	if s, ok := p.releases[release]; ok {
		return s
	}
	if len(p.releases) >= maxReleases {
		release = OtherRelease
		if s, ok := p.releases[release]; ok {
			return s
		}
	}
	s := &releaseStats{}
	p.releases[release] = s
	return s
}

func (p *Probe) recordFailure(release string, class func(*Failures), latency time.Duration, answered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.statsFor(release)
	for _, st := range [2]*releaseStats{&p.total, s} {
		st.requests++
		class(&st.fail)
		if answered {
			st.hist.Record(latency)
		}
	}
}

func (p *Probe) recordSuccess(release string, latency time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	s := p.statsFor(release)
	for _, st := range [2]*releaseStats{&p.total, s} {
		st.requests++
		st.succeeded++
		st.hist.Record(latency)
		if st.first.IsZero() {
			st.first = now
		}
		st.last = now
	}
	if !p.lastSuccess.IsZero() {
		if gap := now.Sub(p.lastSuccess); gap > p.longestGap {
			p.longestGap, p.gapEnd = gap, now
		}
	}
	p.lastSuccess = now
	if release == "" {
		release = UnknownRelease
	}
	for _, m := range p.marks {
		if _, ok := m.firstSuccess[release]; !ok {
			m.firstSuccess[release] = now
		}
	}
}

// Mark records a named point in time, such as "rollback-start". The most
// recent mark of a name is the one TimeToSuccess uses. At most 256 marks
// are kept; later ones replace the newest.
func (p *Probe) Mark(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := &markRecord{Mark: Mark{Name: name, At: time.Now()}, firstSuccess: make(map[string]time.Time)}
	if len(p.marks) >= maxMarks {
		p.marks[len(p.marks)-1] = m
		return
	}
	p.marks = append(p.marks, m)
}

// TimeToSuccess returns the time from the latest mark called name until
// the first successful response served by release that completed after
// it — the measured RTO when the mark is the start of a rollback. ok is
// false when there is no such mark or no such success yet.
func (p *Probe) TimeToSuccess(name, release string) (d time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.marks) - 1; i >= 0; i-- {
		m := p.marks[i]
		if m.Name != name {
			continue
		}
		t, ok := m.firstSuccess[release]
		if !ok {
			return 0, false
		}
		return t.Sub(m.At), true
	}
	return 0, false
}

func (s *releaseStats) report() Stats {
	return Stats{
		Requests:     s.requests,
		Succeeded:    s.succeeded,
		Failed:       s.fail.Total(),
		Failures:     s.fail,
		P50:          s.hist.Quantile(0.50),
		P99:          s.hist.Quantile(0.99),
		MaxLatency:   s.hist.Max(),
		FirstSuccess: s.first,
		LastSuccess:  s.last,
	}
}

// Snapshot reports the window so far; after the probe stopped, the whole
// window.
func (p *Probe) Snapshot() Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := Report{
		Start:         p.start,
		End:           p.end,
		Running:       p.running,
		Rate:          p.cfg.Rate,
		Total:         p.total.report(),
		Releases:      make(map[string]Stats, len(p.releases)),
		LongestGap:    p.longestGap,
		LongestGapEnd: p.gapEnd,
		InFlight:      p.inFlight.Load(),
		Aborted:       p.aborted,
		Marks:         make([]Mark, len(p.marks)),
	}
	if p.running {
		r.End = time.Now()
	}
	for name, s := range p.releases {
		r.Releases[name] = s.report()
	}
	for i, m := range p.marks {
		r.Marks[i] = m.Mark
	}
	if !r.Start.IsZero() {
		from := p.lastSuccess
		if from.IsZero() {
			from = r.Start
		}
		r.SinceLastSuccess = max(0, r.End.Sub(from))
	}
	return r
}
