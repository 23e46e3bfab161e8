package router

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"flightdeck/engine"
)

// testTable builds a snapshot for pools "blue" and "green" without any
// network: selection is a pure function of the request and the draw.
func testTable(t *testing.T, route engine.Route, cohorts []engine.CohortRule) *table {
	t.Helper()
	st := newState()
	st.Pools["blue"] = []string{"127.0.0.1:1"}
	st.Pools["green"] = []string{"127.0.0.1:2"}
	st.Route = route
	st.Cohorts = cohorts
	if err := st.validate(); err != nil {
		t.Fatal(err)
	}
	bs := map[string]*backend{
		"127.0.0.1:1": {addr: "127.0.0.1:1", release: "blue"},
		"127.0.0.1:2": {addr: "127.0.0.1:2", release: "green"},
	}
	return buildTable(st, bs, map[string]*releaseStats{})
}

func TestWeightedSplitAccuracy(t *testing.T) {
	const draws = 100_000
	for _, w := range []float64{0, 0.1, 0.5, 1, 5, 12.5, 25, 50, 75, 95, 99.5, 100} {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("weight=%v/seed=%d", w, seed), func(t *testing.T) {
				tb := testTable(t, engine.Route{Stable: "blue", Candidate: "green", Weight: w}, nil)
				rng := rand.New(rand.NewPCG(seed, 0x5eed))
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				green := 0
				for range draws {
					if tb.pick(req, rng.Uint64()).release == "green" {
						green++
					}
				}
				got := 100 * float64(green) / draws
				if math.Abs(got-w) > 0.5 {
					t.Fatalf("candidate share %.3f %%, want %v ± 0.5", got, w)
				}
				if (w == 0 && green != 0) || (w == 100 && green != draws) {
					t.Fatalf("weight %v must be exact, got %d/%d", w, green, draws)
				}
			})
		}
	}
}

func TestStickyHashIsStableAndMonotonic(t *testing.T) {
	for _, kind := range []string{"cookie", "header"} {
		t.Run(kind, func(t *testing.T) {
			route := engine.Route{Stable: "blue", Candidate: "green"}
			if kind == "cookie" {
				route.StickyCookie = "uid"
			} else {
				route.StickyHeader = "x-user"
			}
			onGreen := map[string]bool{}
			prevGreen := 0
			for _, w := range []float64{10, 25, 50, 90} {
				route.Weight = w
				tb := testTable(t, route, nil)
				rng := rand.New(rand.NewPCG(1, 2))
				green := 0
				for u := range 2000 {
					req := httptest.NewRequest(http.MethodGet, "/", nil)
					id := "user-" + strconv.Itoa(u)
					if kind == "cookie" {
						req.Header.Set("Cookie", "a=b; uid="+id+"; c=d")
					} else {
						req.Header.Set("X-User", id)
					}
					first := tb.pick(req, rng.Uint64()).release
					for range 3 { // same user, other draws: same side
						if got := tb.pick(req, rng.Uint64()).release; got != first {
							t.Fatalf("weight %v: user %s moved from %s to %s", w, id, first, got)
						}
					}
					if onGreen[id] && first != "green" {
						t.Fatalf("raising the weight to %v moved %s back to stable", w, id)
					}
					if first == "green" {
						onGreen[id] = true
						green++
					}
				}
				if share := 100 * float64(green) / 2000; math.Abs(share-w) > 4 {
					t.Fatalf("weight %v: sticky share %.1f %%", w, share)
				}
				if green < prevGreen {
					t.Fatalf("green users went down from %d to %d", prevGreen, green)
				}
				prevGreen = green
			}
		})
	}
}

func TestCohortSelection(t *testing.T) {
	route := engine.Route{Stable: "blue", Candidate: "green", Weight: 0}
	tests := []struct {
		name   string
		rule   engine.CohortRule
		header map[string]string
		want   string
	}{
		{"header exact match", engine.CohortRule{Release: "green", Header: "X-Beta", Value: "yes"}, map[string]string{"X-Beta": "yes"}, "green"},
		{"header other value", engine.CohortRule{Release: "green", Header: "X-Beta", Value: "yes"}, map[string]string{"X-Beta": "no"}, "blue"},
		{"header absent", engine.CohortRule{Release: "green", Header: "X-Beta", Value: "yes"}, nil, "blue"},
		{"header name case", engine.CohortRule{Release: "green", Header: "x-beta", Value: "yes"}, map[string]string{"X-BETA": "yes"}, "green"},
		{"cookie exact", engine.CohortRule{Release: "green", Cookie: "beta", Value: "1"}, map[string]string{"Cookie": "x=1; beta=1"}, "green"},
		{"cookie quoted", engine.CohortRule{Release: "green", Cookie: "beta", Value: "1"}, map[string]string{"Cookie": `beta="1"`}, "green"},
		{"cookie prefix name", engine.CohortRule{Release: "green", Cookie: "beta", Value: "1"}, map[string]string{"Cookie": "betax=1"}, "blue"},
		{"percent 100", engine.CohortRule{Release: "green", Header: "X-User", Percent: 100}, map[string]string{"X-User": "u1"}, "green"},
		{"percent without attribute", engine.CohortRule{Release: "green", Header: "X-User", Percent: 100}, nil, "blue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := testTable(t, route, []engine.CohortRule{tc.rule})
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if got := tb.pick(req, 0).release; got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("percent of users", func(t *testing.T) {
		tb := testTable(t, route, []engine.CohortRule{{Release: "green", Cookie: "uid", Percent: 30}})
		in := 0
		for u := range 10_000 {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Cookie", "uid=u"+strconv.Itoa(u))
			a := tb.pick(req, 0).release
			if b := tb.pick(req, math.MaxUint64).release; a != b {
				t.Fatalf("user u%d: cohort depends on the draw", u)
			}
			if a == "green" {
				in++
			}
		}
		if share := float64(in) / 100; math.Abs(share-30) > 2 {
			t.Fatalf("cohort holds %.1f %% of users, want 30 ± 2", share)
		}
	})
}

// TestWeightedSplitHTTP checks the split end to end through real listeners.
func TestWeightedSplitHTTP(t *testing.T) {
	blue, green := startBackend(t, "blue"), startBackend(t, "green")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {blue}, "green": {green}},
		engine.Route{Stable: "blue", Candidate: "green", Weight: 25})
	const n = 2000
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for range n / 4 {
				code, body := get(t, http.DefaultClient, tr.proxyURL+"/x?w="+strconv.Itoa(w), nil)
				if code != http.StatusOK {
					t.Errorf("status %d", code)
					return
				}
				local[body]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// 3 sigma at p=0.25, n=2000 is 2.9 percentage points.
	if share := 100 * float64(counts["green"]) / n; math.Abs(share-25) > 5 {
		t.Fatalf("green got %.1f %% of %d requests, want 25 ± 5 (%v)", share, n, counts)
	}
	st := tr.r.Stats()
	if got := st["blue"].Requests + st["green"].Requests; got != n {
		t.Fatalf("stats count %d requests, want %d", got, n)
	}
	if st["green"].Status2xx != uint64(counts["green"]) {
		t.Fatalf("green 2xx %d, responses %d", st["green"].Status2xx, counts["green"])
	}
}

func TestStickyAndCohortHTTP(t *testing.T) {
	blue, green := startBackend(t, "blue"), startBackend(t, "green")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {blue}, "green": {green}},
		engine.Route{Stable: "blue", Candidate: "green", Weight: 50, StickyCookie: "sid"})
	hc := http.DefaultClient

	seen := map[string]bool{}
	for u := range 40 {
		cookie := map[string]string{"Cookie": "sid=s" + strconv.Itoa(u)}
		_, first := get(t, hc, tr.proxyURL+"/", cookie)
		seen[first] = true
		for range 5 {
			if _, got := get(t, hc, tr.proxyURL+"/", cookie); got != first {
				t.Fatalf("session s%d moved from %s to %s", u, first, got)
			}
		}
	}
	if !seen["blue"] || !seen["green"] {
		t.Fatalf("40 sessions at weight 50 all went to one side: %v", seen)
	}

	ctx := ctxT(t)
	if err := tr.client.SetRoute(ctx, engine.Route{Stable: "blue", Candidate: "green", Weight: 0}); err != nil {
		t.Fatal(err)
	}
	if err := tr.client.SetCohorts(ctx, []engine.CohortRule{{Release: "green", Header: "X-Beta", Value: "on"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, got := get(t, hc, tr.proxyURL+"/", map[string]string{"X-Beta": "on"}); got != "green" {
			t.Fatalf("cohort request %d went to %s", i, got)
		}
		if _, got := get(t, hc, tr.proxyURL+"/", map[string]string{"X-Beta": "off"}); got != "blue" {
			t.Fatalf("non-cohort request %d went to %s", i, got)
		}
	}
	if err := tr.client.SetCohorts(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Dropping the cohort applies to the very next request.
	for i := range 20 {
		if _, got := get(t, hc, tr.proxyURL+"/", map[string]string{"X-Beta": "on"}); got != "blue" {
			t.Fatalf("after dropping the cohort, request %d went to %s", i, got)
		}
	}
}
