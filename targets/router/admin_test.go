package router

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"flightdeck/engine"
)

// scrape fetches /metrics without a token and parses it.
func scrape(t *testing.T, tr *testRouter) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(tr.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func scrapeHasPositive(t *testing.T, tr *testRouter, family, backend string) bool {
	t.Helper()
	for _, m := range scrape(t, tr)[family].GetMetric() {
		if label(m, "backend") == backend && m.GetCounter().GetValue() > 0 {
			return true
		}
	}
	return false
}

func TestMetricsEndpoint(t *testing.T) {
	a := startBackend(t, "a")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})
	for range 5 {
		get(t, http.DefaultClient, tr.proxyURL+"/", nil)
	}
	get(t, http.DefaultClient, tr.proxyURL+"/fail", nil)
	fams := scrape(t, tr)

	counts := map[string]float64{}
	for _, m := range fams["flightdeck_router_requests_total"].GetMetric() {
		if label(m, "release") == "blue" && label(m, "backend") == a.addr {
			counts[label(m, "code_class")] = m.GetCounter().GetValue()
		}
	}
	if counts["2xx"] != 5 || counts["5xx"] != 1 {
		t.Fatalf("requests_total by class: %v", counts)
	}
	h := fams["flightdeck_router_request_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.GetMetric()) != 1 || h.GetMetric()[0].GetHistogram().GetSampleCount() != 6 {
		t.Fatalf("duration histogram: %v", h)
	}
	var has200ms bool
	for _, b := range h.GetMetric()[0].GetHistogram().GetBucket() {
		has200ms = has200ms || b.GetUpperBound() == 0.2
	}
	if !has200ms {
		t.Fatal("no 200 ms bucket for the default SLO")
	}
	for _, name := range []string{"flightdeck_router_connection_errors_total", "flightdeck_router_backend_healthy", "flightdeck_router_backend_in_flight",
		"flightdeck_router_backend_idle_connections", "flightdeck_router_backend_dials_total", "flightdeck_router_backend_resends_total", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("missing family %s", name)
		}
	}
}

func TestMetricsAuthOption(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAuth = true
	tr := startRouter(t, cfg)
	resp, err := http.Get(tr.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("MetricsAuth: /metrics without token gave %d", resp.StatusCode)
	}
}

func TestAdminRejectsBadRequests(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}, "green": {b}}, engine.Route{Stable: "blue", Candidate: "green", Weight: 10})
	before := tr.r.State()
	stateFile, err := os.ReadFile(tr.cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	tok := "Bearer " + tr.r.Token()

	tests := []struct {
		name, method, path, auth, body string
		want                           int
		msg                            string
	}{
		{"no token", "GET", "/v1/state", "", "", 401, "missing bearer token"},
		{"wrong token", "GET", "/v1/state", "Bearer " + strings.Repeat("0", 64), "", 401, "invalid bearer token"},
		{"wrong scheme", "GET", "/v1/state", "Basic " + tr.r.Token(), "", 401, "missing bearer token"},
		{"no token on a change", "PUT", "/v1/route", "", `{"stable":"green"}`, 401, "missing bearer token"},
		{"unknown stable", "PUT", "/v1/route", tok, `{"stable":"nope"}`, 400, `unknown release "nope"`},
		{"unknown candidate", "PUT", "/v1/route", tok, `{"stable":"blue","candidate":"nope","weight":5}`, 400, `unknown release "nope"`},
		{"weight 130", "PUT", "/v1/route", tok, `{"stable":"blue","candidate":"green","weight":130}`, 400, "outside 0..100"},
		{"weight negative", "PUT", "/v1/route", tok, `{"stable":"blue","candidate":"green","weight":-1}`, 400, "outside 0..100"},
		{"weight without candidate", "PUT", "/v1/route", tok, `{"stable":"blue","weight":5}`, 400, "needs a candidate"},
		{"bad JSON", "PUT", "/v1/route", tok, `{"stable":`, 400, "malformed JSON"},
		{"unknown field", "PUT", "/v1/route", tok, `{"stable":"blue","wieght":5}`, 400, `unknown field "wieght"`},
		{"trailing data", "PUT", "/v1/route", tok, `{"stable":"blue"} {}`, 400, "trailing data"},
		{"trailing brace", "PUT", "/v1/route", tok, `{"stable":"blue"}}`, 400, "trailing data"},
		{"trailing bracket", "PUT", "/v1/cohorts", tok, `[]]`, 400, "trailing data"},
		{"null route", "PUT", "/v1/route", tok, `null`, 400, "null"},
		{"null cohorts", "PUT", "/v1/cohorts", tok, ` null `, 400, "null"},
		{"null pool", "PUT", "/v1/pools/blue", tok, `null`, 400, "null"},
		{"empty body", "PUT", "/v1/route", tok, ``, 400, "malformed JSON"},
		{"bad backend", "PUT", "/v1/pools/blue", tok, `{"backends":["nohost"]}`, 400, "not host:port"},
		{"backend in another pool", "PUT", "/v1/pools/blue", tok, `{"backends":["` + b.addr + `"]}`, 400, "already belongs to release \"green\""},
		{"bad release name", "PUT", "/v1/pools/..x", tok, `{"backends":[]}`, 400, "release name"},
		{"delete referenced pool", "DELETE", "/v1/pools/green", tok, "", 400, `unknown release "green"`},
		{"delete missing pool", "DELETE", "/v1/pools/nope", tok, "", 404, "no pool"},
		{"cohort unknown release", "PUT", "/v1/cohorts", tok, `[{"release":"nope","header":"X-A","value":"1"}]`, 400, `unknown release "nope"`},
		{"cohort header and cookie", "PUT", "/v1/cohorts", tok, `[{"release":"green","header":"X-A","cookie":"a","value":"1"}]`, 400, "exactly one of header or cookie"},
		{"cohort percent 130", "PUT", "/v1/cohorts", tok, `[{"release":"green","header":"X-A","percent":130}]`, 400, "outside 0..100"},
		{"drain unknown", "POST", "/v1/backends/127.0.0.1:1/drain", tok, "", 404, "unknown backend"},
		{"drain bad timeout", "POST", "/v1/backends/" + a.addr + "/drain?timeout=forever", tok, "", 400, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tr.adminURL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var eb errorBody
			if err := json.Unmarshal(data, &eb); err != nil {
				t.Fatalf("answer is not a JSON error: %q", data)
			}
			if resp.StatusCode != tc.want || !strings.Contains(eb.Error, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, eb.Error, tc.want, tc.msg)
			}
		})
	}
	if after := tr.r.State(); !reflect.DeepEqual(after.Route, before.Route) || !reflect.DeepEqual(after.Cohorts, before.Cohorts) || len(after.Backends) != len(before.Backends) {
		t.Fatalf("state changed by rejected requests:\nbefore %+v\nafter  %+v", before, after)
	}
	for _, bs := range tr.r.State().Backends {
		if bs.Draining {
			t.Fatalf("rejected requests drained %s", bs.Addr)
		}
	}
	if got, _ := os.ReadFile(tr.cfg.StateFile); string(got) != string(stateFile) {
		t.Fatal("state file changed by rejected requests")
	}

	// The client surfaces the API's message.
	err = tr.client.SetRoute(context.Background(), engine.Route{Stable: "blue", Candidate: "green", Weight: 130})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Message, "outside 0..100") {
		t.Fatalf("client error %v", err)
	}
}

func TestRestartKeepsStateAndToken(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	cfg := testConfig(t)
	tr := startRouter(t, cfg)
	tr.setup(t, map[string][]*testBackend{"blue": {a}, "green": {b}},
		engine.Route{Stable: "blue", Candidate: "green", Weight: 12.5, StickyCookie: "sid"})
	ctx := ctxT(t)
	cohorts := []engine.CohortRule{{Release: "green", Header: "X-Beta", Value: "on"}, {Release: "green", Cookie: "uid", Percent: 5}}
	if err := tr.client.SetCohorts(ctx, cohorts); err != nil {
		t.Fatal(err)
	}
	if err := tr.client.Drain(ctx, b.addr, 0); err != nil {
		t.Fatal(err)
	}
	tok := tr.r.Token()
	want := tr.r.State()
	if err := tr.r.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(filepath.Dir(cfg.StateFile), DefaultTokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if len(tok) != 64 {
		t.Fatalf("token has %d hex characters, want 64", len(tok))
	}

	tr2 := startRouter(t, cfg)
	if tr2.r.Token() != tok {
		t.Fatal("token changed across restart")
	}
	if err := tr2.client.WaitHealthy(ctxT(t), a.addr); err != nil {
		t.Fatal(err)
	}
	got := tr2.r.State()
	if !reflect.DeepEqual(got.Route, want.Route) || !reflect.DeepEqual(got.Cohorts, want.Cohorts) {
		t.Fatalf("restored route/cohorts differ:\n got %+v %+v\nwant %+v %+v", got.Route, got.Cohorts, want.Route, want.Cohorts)
	}
	if len(got.Backends) != 2 {
		t.Fatalf("restored backends %+v", got.Backends)
	}
	for _, bs := range got.Backends {
		if bs.Draining != (bs.Addr == b.addr) {
			t.Fatalf("restored drain flag wrong: %+v", bs)
		}
	}
	// And it routes: the cohort header still picks green, which is drained,
	// so the stable side serves the request instead of failing it.
	if code, body := get(t, http.DefaultClient, tr2.proxyURL+"/", map[string]string{"X-Beta": "on"}); code != http.StatusOK || body != "a" {
		t.Fatalf("cohort to a drained-only release: %d %q, want 200 from the stable backend a", code, body)
	}
	if code, body := get(t, http.DefaultClient, tr2.proxyURL+"/", map[string]string{"Cookie": "sid=x"}); code != 200 && body != "a" {
		t.Fatalf("sticky request: %d %q", code, body)
	}
}

func TestTokenFileChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tok")
	if err := os.WriteFile(path, []byte(strings.Repeat("a", 64)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token file accepted: %v", err)
	}
	os.Chmod(path, 0o600)
	tok, err := loadOrCreateToken(path)
	if err != nil || tok != strings.Repeat("a", 64) {
		t.Fatalf("reading existing token: %q %v", tok, err)
	}
	// A damaged state file is refused rather than read as "no routes".
	for _, bad := range []string{"{not json", "null", `{"version":1}}`, `{"version":1} x`} {
		if err := os.WriteFile(filepath.Join(dir, "router.json"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(Config{StateFile: filepath.Join(dir, "router.json"), TokenFile: path}); err == nil {
			t.Fatalf("corrupt state file %q accepted", bad)
		}
	}
}
