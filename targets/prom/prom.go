// Package prom measures releases through a Prometheus server: it
// implements engine.MetricsSource with PromQL queries sent through
// client_golang's API client.
//
// A plan names the server and, optionally, three PromQL templates
// (text/template) that receive the release and the window:
//
//	{{.Release}}  the release id, escaped for a double-quoted PromQL string
//	{{.Window}}   the measurement window as a PromQL duration ("1500ms")
//
// Left empty, each template defaults to the built-in router's series
// (DefaultRequests, DefaultErrorRate, DefaultP99).
//
// Measure waits for the window and then evaluates the three queries at the
// instant the wait ended, over a range of exactly that window. Waiting
// (rather than querying the last window at once) is what makes a gate
// measurement describe the step it judges: the engine asks for a
// measurement right after it changed the weight, and the window just
// before that holds traffic of the previous step. Every sample the
// queries read was scraped after the wait began.
//
// The window must hold at least two scrapes of the router for rate() and
// increase() to see anything: with a scrape interval of 15 s a gate
// interval below 30 s yields no data. An empty result or NaN (no traffic,
// 0/0, a histogram without observations) is NoData, which the gate judges
// as inconclusive by default and never as a pass.
package prom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"flightdeck/engine"
	"flightdeck/engine/plan"
)

// Default PromQL templates, reading the built-in router's series
// (targets/router): flightdeck_router_requests_total{release,backend,code_class}
// counts proxied requests by status class (its "5xx" class includes the
// router's own 502 for an unreachable backend and 503 for an empty pool),
// and flightdeck_router_request_duration_seconds{release} is the latency
// histogram.
const (
	// DefaultRequests is the number of requests the release served in the window.
	DefaultRequests = `sum(increase(flightdeck_router_requests_total{release="{{.Release}}"}[{{.Window}}]))`
	// DefaultErrorRate is the fraction of the release's requests answered
	// 5xx. A release that never failed has no 5xx series, hence "or vector(0)";
	// without any request the division is empty (NoData).
	DefaultErrorRate = `(sum(rate(flightdeck_router_requests_total{release="{{.Release}}",code_class="5xx"}[{{.Window}}])) or vector(0))` +
		` / sum(rate(flightdeck_router_requests_total{release="{{.Release}}"}[{{.Window}}]))`
	// DefaultP99 is the release's 99th-percentile latency in seconds.
	DefaultP99 = `histogram_quantile(0.99, sum by (le) (rate(flightdeck_router_request_duration_seconds_bucket{release="{{.Release}}"}[{{.Window}}])))`
)

// DefaultTimeout bounds each query.
const DefaultTimeout = 10 * time.Second

// Source measures releases through a Prometheus server. It implements
// engine.MetricsSource. It is safe for concurrent use.
type Source struct {
	api     v1.API
	url     string
	queries [3]query // requests, error rate, p99
	// Timeout bounds each query (default DefaultTimeout).
	Timeout time.Duration
}

var _ engine.MetricsSource = (*Source)(nil)

// query is one named PromQL template.
type query struct {
	name string
	text string
	tmpl *template.Template
}

// Params are what a query template receives.
type Params struct {
	// Release is the release id, escaped for use inside a double-quoted
	// PromQL string.
	Release string
	// Window is the measurement window as a PromQL duration, e.g. "1500ms".
	Window string
}

// New checks cfg (a server URL and templates that parse and execute) and
// returns a source. It does not contact the server.
func New(cfg *plan.Prometheus) (*Source, error) {
	if cfg == nil || cfg.URL == "" {
		return nil, errors.New("prometheus source: the server URL is required (gate.prometheus.url)")
	}
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("prometheus source: URL %q: want http:// or https://", cfg.URL)
	}
	client, err := api.NewClient(api.Config{Address: cfg.URL, RoundTripper: http.DefaultTransport.(*http.Transport).Clone()})
	if err != nil {
		return nil, fmt.Errorf("prometheus source: client for %s: %w", cfg.URL, err)
	}
	s := &Source{api: v1.NewAPI(client), url: cfg.URL, Timeout: DefaultTimeout}
	specs := []struct{ name, text, def string }{
		{"requests", cfg.Requests, DefaultRequests},
		{"error_rate", cfg.ErrorRate, DefaultErrorRate},
		{"p99", cfg.P99, DefaultP99},
	}
	var errs []error
	for i, sp := range specs {
		text := strings.TrimSpace(sp.text)
		if text == "" {
			text = sp.def
		}
		q, err := parseQuery(sp.name, text)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.queries[i] = q
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func parseQuery(name, text string) (query, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return query{}, fmt.Errorf("prometheus %s query %q: %w", name, text, err)
	}
	q := query{name: name, text: text, tmpl: t}
	// Execute once with sample values, so that {{.Nope}} fails here and
	// not in the middle of a deploy.
	out, err := q.render(Params{Release: "r1", Window: "30s"})
	if err != nil {
		return query{}, err
	}
	if strings.TrimSpace(out) == "" {
		return query{}, fmt.Errorf("prometheus %s query %q renders empty", name, text)
	}
	return q, nil
}

func (q query) render(p Params) (string, error) {
	var b strings.Builder
	if err := q.tmpl.Execute(&b, p); err != nil {
		return "", fmt.Errorf("prometheus %s query %q: %w", q.name, q.text, err)
	}
	return b.String(), nil
}

// Duration formats d as a PromQL duration in whole milliseconds (at least 1ms).
func Duration(d time.Duration) string {
	return strconv.FormatInt(max(1, d.Milliseconds()), 10) + "ms"
}

// escape makes s safe inside a double-quoted PromQL string literal.
func escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Queries returns the three PromQL queries Measure sends for release and
// window (requests, error rate, p99), for display and debugging.
func (s *Source) Queries(release string, window time.Duration) ([3]string, error) {
	var out [3]string
	p := Params{Release: escape(release), Window: Duration(window)}
	for i, q := range s.queries {
		text, err := q.render(p)
		if err != nil {
			return out, err
		}
		out[i] = text
	}
	return out, nil
}

// Measure waits for window (or until ctx ends), then queries the release's
// request count, error rate and p99 over that window. No traffic, an empty
// result or NaN gives a measurement with NoData set.
func (s *Source) Measure(ctx context.Context, release string, window time.Duration) (engine.Measurement, error) {
	m := engine.Measurement{Release: release}
	texts, err := s.Queries(release, window)
	if err != nil {
		return m, err
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return m, fmt.Errorf("measuring %s through %s: %w", release, s.url, ctx.Err())
	case <-t.C:
	}
	return s.measureAt(ctx, m, texts, time.Now())
}

// MeasureNow queries the release's request count, error rate and p99 over
// the window ending now, without waiting (the cockpit's live sampler).
func (s *Source) MeasureNow(ctx context.Context, release string, window time.Duration) (engine.Measurement, error) {
	m := engine.Measurement{Release: release}
	texts, err := s.Queries(release, window)
	if err != nil {
		return m, err
	}
	return s.measureAt(ctx, m, texts, time.Now())
}

func (s *Source) measureAt(ctx context.Context, m engine.Measurement, texts [3]string, at time.Time) (engine.Measurement, error) {
	var vals [3]float64
	var have [3]bool
	for i, text := range texts {
		v, ok, err := s.scalar(ctx, s.queries[i].name, text, at)
		if err != nil {
			return m, err
		}
		vals[i], have[i] = v, ok
	}
	reqs, rate, p99 := vals[0], vals[1], vals[2]
	if !have[0] || !have[1] || !have[2] || reqs <= 0 {
		m.NoData = true
		if have[0] {
			m.Requests = reqs
		}
		return m, nil
	}
	m.Requests = reqs
	m.ErrorRate = rate
	m.Errors = rate * reqs
	m.P99 = time.Duration(p99 * float64(time.Second))
	return m, nil
}

// scalar runs one instant query and returns its single value; ok is false
// for an empty vector, NaN or ±Inf.
func (s *Source) scalar(ctx context.Context, name, text string, at time.Time) (float64, bool, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	val, _, _, err := s.api.Query(qctx, text, at)
	if err != nil {
		return 0, false, fmt.Errorf("prometheus %s query %s at %s: %w", name, text, s.url, err)
	}
	var f float64
	switch v := val.(type) {
	case model.Vector:
		switch len(v) {
		case 0:
			return 0, false, nil
		case 1:
			f = float64(v[0].Value)
		default:
			return 0, false, fmt.Errorf("prometheus %s query %s: %d series, want one (aggregate with sum)", name, text, len(v))
		}
	case *model.Scalar:
		f = float64(v.Value)
	default:
		return 0, false, fmt.Errorf("prometheus %s query %s: result is a %s, want an instant vector or scalar", name, text, val.Type())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, nil
	}
	return f, true, nil
}
