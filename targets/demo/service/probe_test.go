package service

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"flightdeck/engine/probe"
)

// The probe attributes the service's answers to its release through the
// X-Release header, and sees the injected error rate.
func TestProbeAgainstService(t *testing.T) {
	t.Parallel()
	r := startService(t, "r5", &Knobs{ErrorRate: 0.1}, nil)
	p, err := probe.New(probe.Config{URL: r.base + "/", Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("probe did not finish")
	}
	rep := p.Snapshot()
	st, ok := rep.Releases["r5"]
	if !ok || len(rep.Releases) != 1 || st.Requests != rep.Total.Requests {
		t.Fatalf("releases %+v, want every request attributed to r5", rep.Releases)
	}
	if st.Failed != st.Failures.Status5xx || st.ErrorRate() < 0.09 || st.ErrorRate() > 0.11 {
		t.Fatalf("r5 %+v: want 10 %% failures, all 5xx", st)
	}
}

func TestHealthzByPhase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		phase  phase
		status int
		word   string
	}{
		{phaseStarting, http.StatusServiceUnavailable, `"starting"`},
		{phaseReady, http.StatusOK, `"ok"`},
		{phaseStopping, http.StatusServiceUnavailable, `"stopping"`},
	}
	for _, tt := range tests {
		s := &server{}
		s.cur.Store(&view{release: "r1"})
		s.phase.Store(int32(tt.phase))
		rec := httptest.NewRecorder()
		s.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.word) || rec.Header().Get(ReleaseHeader) != "r1" {
			t.Errorf("phase %d: %d %s, want %d %s", tt.phase, rec.Code, rec.Body, tt.status, tt.word)
		}
	}
}
