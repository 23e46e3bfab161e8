package advise

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"flightdeck/engine/plan"
)

func flag(yes bool) Answer { return Answer{Yes: yes, Source: SourceFlag} }

func TestRecommendMatrix(t *testing.T) {
	tests := []struct {
		name     string
		answers  Answers
		want     plan.StrategyKind
		wantName string
		ab       bool
		cost     string
		rollback string
	}{
		{"no load balancer", Answers{LoadBalancer: flag(false)},
			plan.Symlink, "atomic symlink", false, "1×", "~ms"},
		{"no load balancer ignores capacity and observability",
			Answers{LoadBalancer: flag(false), DoubleCapacity: flag(true), FastObservability: flag(true)},
			plan.Symlink, "atomic symlink", false, "1×", "instant re-point"},
		{"lb and double capacity", Answers{LoadBalancer: flag(true), DoubleCapacity: flag(true)},
			plan.BlueGreen, "blue/green", false, "2×", "< 1 s"},
		{"lb, double capacity, slow observability",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(true), FastObservability: flag(false)},
			plan.BlueGreen, "blue/green", false, "2×", "flip"},
		{"lb, no double capacity, fast observability",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(true)},
			plan.Canary, "canary", false, "1.1–1.5×", "weight to 0, seconds"},
		{"lb, no double capacity, slow observability",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(false)},
			plan.Rolling, "rolling", false, "1×–1.1×", "minutes"},
		{"feature on canary",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(true), Feature: flag(true)},
			plan.Canary, "canary", true, "1.1–1.5×", "seconds"},
		{"feature on blue/green",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(true), Feature: flag(true)},
			plan.BlueGreen, "blue/green", true, "2×", "< 1 s"},
		{"feature without load balancer",
			Answers{LoadBalancer: flag(false), Feature: flag(true)},
			plan.Symlink, "atomic symlink", true, "1×", "~ms"},
		{"feature answered no",
			Answers{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(false), Feature: flag(false)},
			plan.Rolling, "rolling", false, "1×–1.1×", "re-roll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Recommend(tt.answers)
			if err != nil {
				t.Fatal(err)
			}
			if r.Strategy != tt.want || r.Name != tt.wantName || r.AB != tt.ab {
				t.Fatalf("got %s (%s) ab=%v, want %s (%s) ab=%v", r.Strategy, r.Name, r.AB, tt.want, tt.wantName, tt.ab)
			}
			if r.Cost != tt.cost {
				t.Errorf("cost %q, want %q", r.Cost, tt.cost)
			}
			if !strings.Contains(r.Rollback, tt.rollback) {
				t.Errorf("rollback %q does not say %q", r.Rollback, tt.rollback)
			}
			if r.CostMin < 1 || r.CostMax < r.CostMin {
				t.Errorf("cost bounds %v..%v", r.CostMin, r.CostMax)
			}
			if len(r.Reasons) < 2 {
				t.Errorf("reasons: %q", r.Reasons)
			}
			if !strings.Contains(r.Snippet, "kind: "+string(tt.want)) {
				t.Errorf("snippet is not for %s:\n%s", tt.want, r.Snippet)
			}
			if tt.ab != (r.ABSnippet != "") || tt.ab != strings.Contains(r.Title(), "A/B on top") {
				t.Errorf("ab=%v but title %q and ab snippet %q", tt.ab, r.Title(), r.ABSnippet)
			}
			if tt.ab && !strings.Contains(strings.Join(r.Reasons, " "), "cohort") {
				t.Errorf("feature reasons do not mention the A/B cohort: %q", r.Reasons)
			}
			text := r.Text()
			for _, want := range []string{"Recommended: " + r.Title(), r.Cost, r.Rollback, r.Reasons[0], "kind: " + string(tt.want)} {
				if !strings.Contains(text, want) {
					t.Errorf("text lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestNeededAndMissing(t *testing.T) {
	tests := []struct {
		name    string
		answers Answers
		want    []Question
	}{
		{"nothing", Answers{}, []Question{LoadBalancer, DoubleCapacity, FastObservability}},
		{"only feature", Answers{Feature: flag(true)}, []Question{LoadBalancer, DoubleCapacity, FastObservability}},
		{"double capacity known yes", Answers{DoubleCapacity: flag(true)}, []Question{LoadBalancer}},
		{"observability known", Answers{FastObservability: flag(false)}, []Question{LoadBalancer, DoubleCapacity}},
		{"no lb", Answers{LoadBalancer: flag(false)}, nil},
		{"lb", Answers{LoadBalancer: flag(true)}, []Question{DoubleCapacity, FastObservability}},
		{"lb no double", Answers{LoadBalancer: flag(true), DoubleCapacity: flag(false)}, []Question{FastObservability}},
		{"lb double", Answers{LoadBalancer: flag(true), DoubleCapacity: flag(true)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.answers.Needed()
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Needed() = %v, want %v", got, tt.want)
			}
			_, err := Recommend(tt.answers)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Recommend: %v", err)
				}
				return
			}
			var me *MissingError
			if !errors.As(err, &me) || !errors.Is(err, ErrMissing) {
				t.Fatalf("Recommend error %v, want a *MissingError", err)
			}
			if !slices.Equal(me.Questions, tt.want) {
				t.Errorf("missing %v, want %v", me.Questions, tt.want)
			}
			for _, q := range tt.want {
				if !strings.Contains(err.Error(), q.Flag()) {
					t.Errorf("error %q does not name %s", err, q.Flag())
				}
			}
		})
	}
}

func TestSetKeepsStrongerAnswer(t *testing.T) {
	a := Answers{}
	if !a.Set(LoadBalancer, flag(false)) {
		t.Fatal("first Set not recorded")
	}
	if a.Set(LoadBalancer, Answer{Yes: true, Source: SourcePlan}) {
		t.Fatal("second Set overwrote the flag")
	}
	if a[LoadBalancer].Yes || a[LoadBalancer].Source != SourceFlag {
		t.Fatalf("answer %+v", a[LoadBalancer])
	}
	if len(a.Optional()) != 1 {
		t.Fatalf("Optional() = %v before feature is answered", a.Optional())
	}
	a.Set(Feature, flag(false))
	if len(a.Optional()) != 0 {
		t.Fatalf("Optional() = %v after feature is answered", a.Optional())
	}
}

// parseSnippet parses snippet inside a minimal full plan.
func parseSnippet(t *testing.T, snippet string) *plan.Plan {
	t.Helper()
	src := "app: shop\nsource: ./build\n" + snippet
	p, err := plan.Parse(filepath.Join(t.TempDir(), "flightdeck.yaml"), []byte(src))
	if err != nil {
		t.Fatalf("snippet does not parse: %v\n%s", err, src)
	}
	return p
}

func TestSnippetsParse(t *testing.T) {
	for _, kind := range []plan.StrategyKind{plan.Symlink, plan.Rolling, plan.Canary, plan.BlueGreen, plan.AB} {
		for _, env := range []string{"production", "staging-eu", "yes", "null", "2"} {
			t.Run(string(kind)+"/"+env, func(t *testing.T) {
				p := parseSnippet(t, Snippet(kind, env))
				e, err := p.Env(env)
				if err != nil {
					t.Fatal(err)
				}
				if e.Strategy.Kind != kind {
					t.Fatalf("kind %s, want %s", e.Strategy.Kind, kind)
				}
				if len(e.Hosts) != snippetHosts {
					t.Fatalf("%d hosts", len(e.Hosts))
				}
				// What the snippet says must lead back to its own strategy.
				a := FromPlan(e)
				switch kind {
				case plan.Symlink:
					if e.Router != nil {
						t.Error("symlink snippet has a router")
					}
				case plan.Rolling, plan.Canary:
					if !a[LoadBalancer].Yes || a[DoubleCapacity].Yes {
						t.Errorf("answers from %s snippet: %+v", kind, a)
					}
				case plan.BlueGreen, plan.AB:
					if !a[LoadBalancer].Yes || !a[DoubleCapacity].Yes {
						t.Errorf("answers from %s snippet: %+v", kind, a)
					}
				}
				if kind == plan.Canary || kind == plan.AB {
					if !a[FastObservability].Yes {
						t.Errorf("%s snippet has no observability: %+v", kind, a)
					}
				}
			})
		}
	}
}

func TestRecommendationSnippetsParse(t *testing.T) {
	for _, a := range []Answers{
		{LoadBalancer: flag(false), Feature: flag(true)},
		{LoadBalancer: flag(true), DoubleCapacity: flag(true), Feature: flag(true)},
		{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(true), Feature: flag(true)},
		{LoadBalancer: flag(true), DoubleCapacity: flag(false), FastObservability: flag(false), Feature: flag(true)},
	} {
		r, err := Recommend(a)
		if err != nil {
			t.Fatal(err)
		}
		parseSnippet(t, r.Snippet)
		p := parseSnippet(t, r.ABSnippet)
		if e, _ := p.Env("production"); e.Strategy.Kind != plan.AB || e.Strategy.Cohort == nil {
			t.Errorf("A/B snippet for %s is not an ab strategy with a cohort", r.Strategy)
		}
	}
}

func TestFromPlan(t *testing.T) {
	const head = "app: shop\nsource: ./build\nenvironments:\n  production:\n"
	tests := []struct {
		name string
		env  string
		want map[Question]bool // absent: unanswered
		why  map[Question]string
	}{
		{
			name: "single local host",
			env:  "    hosts:\n      - {name: web-1, local: ./h1}\n",
			want: map[Question]bool{LoadBalancer: false},
			why:  map[Question]string{LoadBalancer: "one host"},
		},
		{
			name: "several hosts, no router: the plan does not say",
			env:  "    hosts:\n      - {name: web-1, local: ./h1}\n      - {name: web-2, local: ./h2}\n",
			want: map[Question]bool{},
		},
		{
			name: "router and backends",
			env: "    router: {admin: \"http://127.0.0.1:9901\"}\n    hosts:\n" +
				"      - {name: web-1, local: ./h1, backend: \"127.0.0.1:8081\"}\n" +
				"      - {name: web-2, local: ./h2}\n",
			want: map[Question]bool{LoadBalancer: true},
			why:  map[Question]string{LoadBalancer: "1 of 2 hosts"},
		},
		{
			name: "blue/green slots",
			env: "    router: {admin: \"http://127.0.0.1:9901\"}\n    strategy: {kind: bluegreen}\n    hosts:\n" +
				"      - {name: web-1, local: ./h1, slots: {blue: \"127.0.0.1:8081\", green: \"127.0.0.1:8082\"}}\n",
			want: map[Question]bool{LoadBalancer: true, DoubleCapacity: true},
			why:  map[Question]string{DoubleCapacity: "slots"},
		},
		{
			name: "prometheus gate",
			env: "    router: {admin: \"http://127.0.0.1:9901\"}\n    strategy: {kind: canary}\n" +
				"    gate: {source: prometheus, prometheus: {url: \"http://127.0.0.1:9090\"}}\n    hosts:\n" +
				"      - {name: web-1, local: ./h1, backend: \"127.0.0.1:8081\"}\n",
			want: map[Question]bool{LoadBalancer: true, FastObservability: true},
			why:  map[Question]string{FastObservability: "Prometheus"},
		},
		{
			name: "auto rollback trigger only",
			env: "    auto_rollback: {error_rate: 1%}\n    hosts:\n" +
				"      - {name: web-1, local: ./h1}\n      - {name: web-2, local: ./h2}\n",
			want: map[Question]bool{FastObservability: true},
			why:  map[Question]string{FastObservability: "auto_rollback"},
		},
		{
			name: "ab strategy",
			env: "    router: {admin: \"http://127.0.0.1:9901\"}\n    strategy: {kind: ab, cohort: {header: X-Beta, value: \"1\"}}\n    hosts:\n" +
				"      - {name: web-1, local: ./h1, slots: {blue: \"127.0.0.1:8081\", green: \"127.0.0.1:8082\"}}\n",
			want: map[Question]bool{LoadBalancer: true, DoubleCapacity: true, FastObservability: true, Feature: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := plan.Parse(filepath.Join(t.TempDir(), "flightdeck.yaml"), []byte(head+tt.env))
			if err != nil {
				t.Fatal(err)
			}
			e, err := p.Env("")
			if err != nil {
				t.Fatal(err)
			}
			got := FromPlan(e)
			if len(got) != len(tt.want) {
				t.Errorf("answered %v, want %v", got, tt.want)
			}
			for q, yes := range tt.want {
				ans, ok := got[q]
				if !ok || ans.Yes != yes || ans.Source != SourcePlan || ans.Why == "" {
					t.Errorf("%s: %+v (answered %v), want yes=%v from the plan with a reason", q, ans, ok, yes)
				}
				if w := tt.why[q]; !strings.Contains(ans.Why, w) {
					t.Errorf("%s: why %q lacks %q", q, ans.Why, w)
				}
			}
		})
	}
	if len(FromPlan(nil)) != 0 {
		t.Error("FromPlan(nil) answered something")
	}
}

func TestTextShowsSources(t *testing.T) {
	a := Answers{
		LoadBalancer:      {Yes: true, Source: SourcePlan, Why: "router at http://127.0.0.1:9901"},
		DoubleCapacity:    flag(false),
		FastObservability: {Yes: true, Source: SourcePrompt},
		Feature:           {Yes: false, Source: SourceDefault, Why: "shipping a release"},
	}
	r, err := Recommend(a)
	if err != nil {
		t.Fatal(err)
	}
	text := r.Text()
	for _, want := range []string{
		"from the plan: router at http://127.0.0.1:9901",
		"flag --double-capacity",
		"(prompt)",
		"default: shipping a release",
		"Recommended: canary",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}
