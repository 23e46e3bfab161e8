package engine

import (
	"context"
	"fmt"
	"time"

	"flightdeck/engine/plan"
	"flightdeck/engine/probe"
)

// runProbe is synthetic traffic sent for the whole window of a run.
type runProbe struct {
	p *probe.Probe
}

func startProbe(ctx context.Context, cfg *plan.Probe) (*runProbe, error) {
	p, err := probe.New(probe.Config{URL: cfg.URL, Rate: float64(cfg.Rate), Timeout: cfg.Timeout.Duration, UserHeader: cfg.UserHeader})
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if err := p.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return &runProbe{p: p}, nil
}

// stop ends the probe and summarises its window.
func (rp *runProbe) stop() *ProbeSummary {
	rp.p.Stop()
	return SummariseProbe(rp.p.Snapshot())
}

// SummariseProbe turns a probe report into the run report's summary.
func SummariseProbe(r probe.Report) *ProbeSummary {
	s := &ProbeSummary{
		Rate: r.Rate, Requests: int64(r.Total.Requests), Failed: int64(r.Total.Failed),
		P50: r.Total.P50, P99: r.Total.P99, LongestGap: r.LongestGap,
		Releases: map[string]ReleaseProbe{},
	}
	if r.SinceLastSuccess > s.LongestGap && r.Total.Succeeded > 0 {
		s.LongestGap = r.SinceLastSuccess
	}
	for rel, st := range r.Releases {
		rp := ReleaseProbe{Requests: int64(st.Requests), Failed: int64(st.Failed), P99: st.P99}
		if rel != probe.UnknownRelease {
			// A response that names its release was answered by it: its
			// error statuses are the release's own errors. (Without a name,
			// the traffic layer answered, or nothing did.)
			f := st.Failures
			rp.Errors = int64(f.Status5xx + f.Status4xx + f.StatusOther)
			s.ReleaseErrors += rp.Errors
		}
		s.Releases[rel] = rp
	}
	return s
}

// hitless is the one-line verdict on probe traffic: HITLESS when no probe
// request failed and p99 stayed within the SLO.
func hitless(ps *ProbeSummary, p99 time.Duration) string {
	if ps == nil {
		return ""
	}
	switch {
	case ps.Requests == 0:
		return "NO PROBE DATA"
	case ps.Failed > 0:
		return fmt.Sprintf("NOT HITLESS: %d of %d probe requests failed", ps.Failed, ps.Requests)
	case p99 > 0 && ps.P99 > p99:
		return fmt.Sprintf("NOT HITLESS: probe p99 %s > %s", ps.P99.Round(time.Millisecond), p99)
	}
	return "HITLESS"
}
