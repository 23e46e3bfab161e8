package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const examplePlan = `app: shop
source: ./build            # directory whose contents become a release
keep_releases: 5
environments:
  production:
    hosts:
      - name: web-1
        local: /srv/web-1  # a host that is a directory on this machine; it is the deploy_to
    strategy:
      kind: rolling        # symlink | rolling | canary | bluegreen | ab
      wave_size: 2         # hosts per wave (rolling); also accepts a percentage "25%"
      pause: 0s            # pause between waves
`

// problems returns the positioned problems an error holds.
func problems(t *testing.T, err error) []*Error {
	t.Helper()
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	t.Fatalf("error %v (%T) holds no positioned problem", err, err)
	return nil
}

func mustParse(t *testing.T, src string) *Plan {
	t.Helper()
	p, err := Parse("flightdeck.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "flightdeck.yaml")
	if err := os.WriteFile(file, []byte(examplePlan), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.File != file || p.Dir != dir {
		t.Errorf("File, Dir = %q, %q; want %q, %q", p.File, p.Dir, file, dir)
	}
	if p.App != "shop" {
		t.Errorf("App = %q", p.App)
	}
	if p.Source == nil || p.Source.Dir != filepath.Join(dir, "build") || p.Source.Git != nil {
		t.Errorf("Source = %+v; want dir %s", p.Source, filepath.Join(dir, "build"))
	}
	if p.KeepReleases != 5 {
		t.Errorf("KeepReleases = %d", p.KeepReleases)
	}
	if p.VerifyReleases != VerifyChanged {
		t.Errorf("VerifyReleases = %q, want %q", p.VerifyReleases, VerifyChanged)
	}
	if !slices.Equal(p.EnvOrder, []string{"production"}) {
		t.Errorf("EnvOrder = %v", p.EnvOrder)
	}
	e, err := p.Env("")
	if err != nil {
		t.Fatalf("Env(\"\"): %v", err)
	}
	if e.Name != "production" || len(e.Hosts) != 1 {
		t.Fatalf("env = %q with %d hosts", e.Name, len(e.Hosts))
	}
	h := e.Hosts[0]
	if h.Name != "web-1" || h.Local != "/srv/web-1" || h.SSH != "" || h.Line != 7 || h.Column != 9 {
		t.Errorf("host = %+v; want web-1 local /srv/web-1 at 7:9", *h)
	}
	s := e.Strategy
	if s.Kind != Rolling || s.WaveSize != (Size{N: 2, Set: true}) || s.Pause.Duration != 0 {
		t.Errorf("strategy = %+v", s)
	}
	if s.MaxUnavailable != s.WaveSize || s.OnFailure != "rollback" || e.Parallel != 16 {
		t.Errorf("defaults: max_unavailable %v on_failure %q parallel %d", s.MaxUnavailable, s.OnFailure, e.Parallel)
	}
	if !e.AutoPromote() || e.Gate != nil {
		t.Errorf("AutoPromote %v, Gate %+v: want true, nil", e.AutoPromote(), e.Gate)
	}
	if got := p.PromotionOrder(); !slices.Equal(got, []string{"production"}) {
		t.Errorf("PromotionOrder = %v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v; want a not-exist error naming the file", err)
	}
}

// hostsBlock is a valid environment body to build cases on.
const head = "app: shop\nsource: ./build\n"

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want lists "line:col: message" (a prefix of the message suffices).
		want []string
	}{
		{"unknown key with suggestion", head + `environments:
  production:
    hosts:
      - name: web-1
        local: /srv/web-1
    strategy:
      wave_sise: 2
`, []string{`9:7: unknown key "wave_sise" in strategy (did you mean "wave_size"?)`}},
		{"unknown key without close match lists keys", head + "colour: red\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:1: unknown key "colour" at the top level (expected one of: app, source, build,`}},
		{"unknown key in environment", head + `environments:
  prod:
    host: []
`, []string{`4:3: environment "prod" has no hosts`, `5:5: unknown key "host" in environment "prod" (did you mean "hosts"?)`}},
		{"camel case suggestion", head + "KeepReleases: 3\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:1: unknown key "KeepReleases" at the top level (did you mean "keep_releases"?)`}},
		{"duplicate key", head + "app: other\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:1: key "app" is written twice (first on line 1)`}},
		{"bad yaml", "app: shop\nsource: [unclosed\nenvironments: {}\n", []string{`:1: invalid YAML: `}},
		{"bad yaml mapping", "app: shop\n  source: x\n", []string{`2:1: invalid YAML: mapping values are not allowed`}},
		{"tab indentation", "app: shop\n\tsource: x\n", []string{`2:1: invalid YAML: found a tab character that violates indentation`}},
		{"invalid utf-8", "app: shop\nsource: \xff\n", []string{`2:9: invalid YAML: `}},
		{"empty file", "# nothing\n", []string{`1:1: the plan is empty`}},
		{"second document", examplePlan + "---\napp: x\n", []string{`13:1: a plan file holds one YAML document`}},
		{"wave_size abc", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy: {wave_size: abc}
`, []string{`6:27: expected a number of hosts like 2 or a percentage like "25%", got "abc"`}},
		{"wave_size 0 and 150%", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy: {wave_size: 0, max_unavailable: 150%}
`, []string{`6:27: expected a number of hosts like 2 or a percentage like "25%", at least 1, got 0`, `6:47: expected a number of hosts like 2 or a percentage like "25%": a percentage must be more than 0% and at most 100%, got "150%"`}},
		{"pause bare number", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy:
      pause: 5
`, []string{`7:14: expected a duration like "30s" or "1m30s", got the bare number 5: add a unit, e.g. "5s" or "5ms"`}},
		{"pause quoted bare number", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    strategy: {pause: \"30\"}\n",
			[]string{`6:23: expected a duration like "30s" or "1m30s", got the bare number 30: add a unit, e.g. "30s" or "30ms"`}},
		{"duration nonsense and negative", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy: {pause: soon, drain: -1s}
`, []string{`6:23: expected a duration like "30s" or "1m30s" (units: ms, s, m, h), got "soon"`, `6:36: a duration cannot be negative, got "-1s"`}},
		{"keep_releases string", `app: shop
source: ./build
keep_releases: "x"
environments: {p: {hosts: [{name: a, local: /a}]}}
`, []string{`3:16: expected a whole number, got "x"`}},
		{"keep_releases float", head + "keep_releases: 2.5\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:16: expected a whole number, got 2.5`}},
		{"keep_releases 1", head + "keep_releases: 1\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:16: keep_releases: 1 would keep only the live release, leaving nothing to roll back to`}},
		{"keep_releases 0", head + "keep_releases: 0\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`3:16: keep_releases must be at least 2`}},
		{"bool expected", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy: {auto_promote: maybe}
`, []string{`6:30: expected true or false, got "maybe"`}},
		{"list where mapping expected", head + "environments: [a, b]\n", []string{`3:15: expected a set of "name: value" lines, got a list`}},
		{"scalar where struct expected", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    strategy: canary\n",
			[]string{`6:15: expected a strategy (a set of "key: value" lines), got "canary"`}},
		{"percent bad", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    auto_rollback: {error_rate: lots, p99: 1s}
`, []string{`6:33: expected a percentage like "0.1%" or 1, got "lots"`}},
		{"percent out of range", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    auto_rollback: {error_rate: 120%}
`, []string{`6:33: a percentage must be between 0% and 100%, got "120%"`}},

		// Validation.
		{"missing app", "source: ./build\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n", []string{`1:1: missing required key "app"`}},
		{"empty app", "app:\nsource: ./build\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n", []string{`1:1: missing required key "app"`}},
		{"missing source", "app: shop\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n", []string{`1:1: missing required key "source"`}},
		{"source dir and git", "app: shop\nsource: {dir: ./b, git: {repo: /r}}\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n",
			[]string{`2:9: source has both dir and git; choose one`}},
		{"source empty mapping", "app: shop\nsource: {}\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n",
			[]string{`2:9: source needs a directory`}},
		{"source git without repo", "app: shop\nsource:\n  git: {ref: main}\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n",
			[]string{`3:8: source.git needs repo`}},
		{"source unknown key", "app: shop\nsource: {gti: {repo: /r}}\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n",
			[]string{`2:9: source needs a directory`, `2:10: unknown key "gti" in source (did you mean "git"?)`}},
		{"no environments", head, []string{`1:1: missing required key "environments"`}},
		{"empty environments", head + "environments: {}\n", []string{`3:1: environments is empty`}},
		{"environment without hosts", head + "environments:\n  staging:\n", []string{`4:3: environment "staging" has no hosts`}},
		{"host without name", head + "environments:\n  p:\n    hosts:\n      - local: /a\n", []string{`6:9: a host needs a name`}},
		{"duplicate host name", head + `environments:
  p:
    hosts:
      - {name: a, local: /a}
      - {name: a, local: /b}
`, []string{`7:16: host name "a" is used twice in environment "p" (first on line 6)`}},
		{"empty environment name", head + "environments:\n  \"\": {hosts: [{name: a, local: /a}]}\n", []string{`4:3: an environment needs a name`}},
		{"same host name in two environments is fine", head + `environments:
  s: {hosts: [{name: a, local: /a}]}
  p: {hosts: [{name: a, local: /b}]}
`, nil},
		{"host local and ssh", head + "environments:\n  p:\n    deploy_to: /srv/shop\n    hosts:\n      - {name: a, local: /a, ssh: deploy@a}\n",
			[]string{`7:9: host "a" has both local and ssh`}},
		{"host neither local nor ssh", head + "environments:\n  p:\n    hosts:\n      - name: a\n", []string{`6:9: host "a" needs local: (a directory on this machine) or ssh: (user@address)`}},
		{"ssh host without deploy_to", head + "environments:\n  p:\n    hosts:\n      - {name: a, ssh: deploy@a}\n",
			[]string{`6:9: host "a" is reached over ssh and needs deploy_to (on the host or on environment "p")`}},
		{"relative deploy_to", head + "environments:\n  p:\n    hosts:\n      - {name: a, ssh: deploy@a, deploy_to: srv/shop}\n",
			[]string{`6:45: deploy_to must be an absolute path on the server`}},
		{"local host with deploy_to", head + "environments:\n  p:\n    hosts:\n      - {name: a, local: /a, deploy_to: /b}\n",
			[]string{`6:41: host "a" is local: its directory is its deploy_to; remove deploy_to`}},
		{"unknown strategy kind", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    strategy: {kind: canery}\n",
			[]string{`6:22: unknown strategy "canery" (did you mean "canary"?)`}},
		{"unknown verify_releases", head + "verify_releases: sometimes\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n",
			[]string{`3:18: unknown verify_releases "sometimes" (expected one of: changed, full)`}},
		{"unknown on_failure", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    strategy: {on_failure: ignore}\n",
			[]string{`6:28: unknown on_failure "ignore" (expected one of: rollback, halt)`}},
		{"canary steps", head + `environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a, backend: "127.0.0.1:8081"}]
    strategy: {kind: canary, steps: [0, 10, 5, 50]}
`, []string{
			`7:37: canary steps must end at 100`,
			`7:38: a canary step is a percentage of traffic from 1 to 100, got 0`,
			`7:45: canary steps must increase, but 5 comes after 10`,
		}},
		{"canary step above 100", head + `environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a, backend: "127.0.0.1:8081"}]
    strategy: {kind: canary, steps: [50, 200, 100]}
`, []string{`7:42: a canary step is a percentage of traffic from 1 to 100, got 200`}},
		{"canary needs router and backend", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    strategy: {kind: canary}
`, []string{`5:13: host "a" needs backend`, `6:5: strategy canary moves traffic through a router`}},
		{"bluegreen needs slots", head + `environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    strategy: {kind: bluegreen}
    hosts:
      - {name: a, local: /a}
      - {name: b, local: /b, slots: {blue: "127.0.0.1:1"}}
      - {name: c, local: /c, slots: {blue: "127.0.0.1:1", red: "127.0.0.1:2"}}
`, []string{
			`8:9: host "a" needs slots: {blue: ADDRESS, green: ADDRESS}`,
			`9:37: host "b" needs an address for the green slot`,
			`10:37: host "c" needs an address for the green slot`,
			`10:59: unknown slot "red" (expected one of: blue, green)`,
		}},
		{"ab needs cohort", head + `environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a, slots: {blue: "127.0.0.1:8081", green: "127.0.0.1:8082"}}]
    strategy: {kind: ab}
`, []string{`7:5: an ab strategy needs a cohort`}},
		{"gate enums", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    gate: {source: grafana, no_data: ignore}
`, []string{`6:20: unknown source "grafana" (expected one of: router, prometheus)`, `6:38: unknown no_data "ignore" (expected one of: hold, fail, pass)`}},
		{"prometheus gate needs url", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    gate:
      source: prometheus
      prometheus: {error_rate: "sum(rate(x[1m]))"}
`, []string{`8:7: prometheus needs a url`}},
		{"prometheus gate without section", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    gate: {source: prometheus}\n",
			[]string{`6:20: a prometheus gate needs prometheus: {url: http://127.0.0.1:9090}`}},
		{"gate numbers", head + `environments:
  p:
    hosts: [{name: a, local: /a}]
    gate: {count: 0, failure_limit: 4, interval: 0s}
`, []string{`6:19: count must be at least 1, got 0`, `6:37: failure_limit (4) is larger than count (3)`, `6:50: interval must be longer than 0s`}},
		{"promotion names unknown environment", head + `promotion: [staging, prod]
environments:
  staging: {hosts: [{name: a, local: /a}]}
  production: {hosts: [{name: a, local: /b}]}
`, []string{`3:22: unknown environment "prod" in promotion (did you mean "production"?)`}},
		{"require_approval", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    require_approval: [promot, deploy]\n",
			[]string{`6:24: unknown approval "promot" in require_approval (did you mean "promote"?)`, `6:32: unknown approval "deploy" in require_approval (expected one of: promote)`}},
		{"ssh persist and control_dir", head + "environments:\n  p:\n    hosts: [{name: a, ssh: a.example, deploy_to: /srv/a}]\n    ssh: {persist: 25h, control_dir: run/fd}\n",
			[]string{`6:20: persist must be between 0s (off) and 24h`, `6:38: control_dir must be an absolute path or start with ~/: "run/fd"`}},
		{"parallel 0", head + "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    parallel: 0\n",
			[]string{`6:15: parallel must be at least 1, got 0`}},
		{"hook without command", head + "hooks:\n  migrate:\n    - {timeout: 5m}\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`5:7: a hook needs a command to run`}},
		{"hook wrong form", head + "hooks:\n  migrate:\n    - [a, b]\n" + `environments: {p: {hosts: [{name: a, local: /a}]}}`,
			[]string{`5:7: expected a command (- ./migrate.sh) or {run: COMMAND, timeout: 5m, local: true}, got a list`}},
		{"many problems at once, sorted", `app: shop
source: ./build
keep_releases: 1
environments:
  production:
    hosts:
      - name: web-1
      - name: web-1
        local: /a
    strategy:
      kind: rolling
      wave_sise: 2
      pause: 5
`, []string{
			`3:16: keep_releases: 1`,
			`7:9: host "web-1" needs local:`,
			`8:15: host name "web-1" is used twice`,
			`12:7: unknown key "wave_sise" in strategy (did you mean "wave_size"?)`,
			`13:14: expected a duration like "30s"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkProblems(t, tt.src, tt.want) })
	}
}

// checkProblems parses src and wants exactly the problems want (each
// problem containing its want, in order), or none.
func checkProblems(t *testing.T, src string, want []string) {
	t.Helper()
	p, err := Parse("flightdeck.yaml", []byte(src))
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	if p != nil {
		t.Errorf("a plan was returned along with the error")
	}
	got := problems(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i].Error(), "flightdeck.yaml:") || !strings.Contains(got[i].Error(), w) {
			t.Errorf("problem %d = %q; want it to contain %q", i, got[i].Error(), w)
		}
	}
	if len(got) > 1 && err.Error() != joinErrors(got) {
		t.Errorf("Errors.Error() does not list every problem on its own line:\n%s", err)
	}
}

func joinErrors(es []*Error) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func TestExactErrorText(t *testing.T) {
	src := head + `environments:
  production:
    hosts:
      - name: web-1
        local: /srv/web-1
    strategy:
      wave_sise: 2
`
	_, err := Parse("flightdeck.yaml", []byte(src))
	want := `flightdeck.yaml:9:7: unknown key "wave_sise" in strategy (did you mean "wave_size"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.File != "flightdeck.yaml" || pe.Line != 9 || pe.Column != 7 {
		t.Fatalf("errors.As *Error = %+v", pe)
	}
}

// Messages are read by SREs: no Go type names or YAML tags in them.
func TestMessagesHaveNoGoTypes(t *testing.T) {
	srcs := []string{
		head + "keep_releases: [1]\nbuild: {a: b}\nhealth: 3\nhooks: x\nenvironments: {p: {hosts: x, parallel: true, ssh: [], gate: {count: x, error_rate: [], p99: {}}}}\n",
		head + "environments: {p: {hosts: [{name: [a], slots: [x], local: {}}], strategy: {steps: [a], wave_size: [], auto_promote: {}}}}\n",
		"app: {x: 1}\nsource: 1.5\nenvironments: 7\n",
	}
	goish := regexp.MustCompile(`\b(int|int64|float64|bool|struct|slice|nil|reflect|ptr)\b|plan\.|yaml:|!!|\*`)
	for _, src := range srcs {
		_, err := Parse("flightdeck.yaml", []byte(src))
		if err == nil {
			t.Fatalf("no error for %q", src)
		}
		for _, e := range problems(t, err) {
			if goish.MatchString(e.Msg) {
				t.Errorf("message reads like Go, not like a plan: %q", e.Msg)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	p := mustParse(t, head+`environments:
  staging:
    hosts: [{name: a, local: ./hosts/a}]
  production:
    deploy_to: /srv/shop
    router: {admin: "http://127.0.0.1:9901"}
    ssh: {}
    probe: {url: "http://127.0.0.1:8080/"}
    auto_rollback: {error_rate: 1%}
    hosts:
      - {name: a, ssh: deploy@a, backend: "127.0.0.1:8081"}
      - {name: b, ssh: deploy@b, backend: "127.0.0.1:8082", deploy_to: /opt/shop}
    strategy: {kind: canary}
`)
	if p.KeepReleases != 5 {
		t.Errorf("KeepReleases = %d; want 5", p.KeepReleases)
	}
	if !slices.Equal(p.EnvOrder, []string{"staging", "production"}) {
		t.Errorf("EnvOrder = %v; want file order", p.EnvOrder)
	}
	st := p.Environments["staging"]
	if got := st.Hosts[0].Local; got != filepath.Join(p.Dir, "hosts", "a") {
		t.Errorf("relative local path = %q; want it resolved against the plan's directory %q", got, p.Dir)
	}
	if st.Strategy.Kind != Rolling || st.Strategy.WaveSize != (Size{N: 1, Set: true}) || st.Strategy.OnFailure != "rollback" || st.Parallel != 16 {
		t.Errorf("staging strategy defaults = %+v parallel %d", st.Strategy, st.Parallel)
	}
	if st.Strategy.Steps != nil || st.Gate != nil {
		t.Errorf("rolling got canary defaults: steps %v gate %+v", st.Strategy.Steps, st.Gate)
	}
	pr := p.Environments["production"]
	if !slices.Equal(pr.Strategy.Steps, []int{1, 5, 25, 100}) {
		t.Errorf("canary steps = %v", pr.Strategy.Steps)
	}
	want := Gate{
		Source: "router", ErrorRate: Percent{Value: 0.1, Set: true}, P99: Duration{200 * time.Millisecond},
		Interval: Duration{10 * time.Second}, Count: 3, FailureLimit: 1, MinRequests: 50, NoData: "hold",
	}
	if pr.Gate == nil || !reflect.DeepEqual(*pr.Gate, want) {
		t.Errorf("canary gate = %+v; want %+v", pr.Gate, want)
	}
	if pr.Hosts[0].DeployTo != "/srv/shop" || pr.Hosts[1].DeployTo != "/opt/shop" {
		t.Errorf("ssh deploy_to = %q, %q; want the environment's, then the host's own", pr.Hosts[0].DeployTo, pr.Hosts[1].DeployTo)
	}
	if pr.Router.Drain.Duration != 30*time.Second || pr.Strategy.Drain.Duration != 30*time.Second || pr.Strategy.KeepWarm.Duration != 10*time.Minute {
		t.Errorf("drain/keep_warm defaults: %v %v %v", pr.Router.Drain, pr.Strategy.Drain, pr.Strategy.KeepWarm)
	}
	if pr.SSH.ConnectTimeout.Duration != 10*time.Second || pr.SSH.CommandTimeout.Duration != 5*time.Minute || pr.SSH.MaxParallelDials != 64 {
		t.Errorf("ssh defaults: %+v", *pr.SSH)
	}
	if pr.Probe.Rate != 10 || pr.Probe.Timeout.Duration != 2*time.Second || pr.AutoRollback.For.Duration != 30*time.Second {
		t.Errorf("probe/auto_rollback defaults: %+v %+v", *pr.Probe, *pr.AutoRollback)
	}
	// Explicit gate values are kept, the rest defaulted.
	p = mustParse(t, head+`environments:
  p:
    hosts: [{name: a, local: /a}]
    gate: {error_rate: 0, p99: 1s, source: prometheus, prometheus: {url: "http://127.0.0.1:9090"}, no_data: fail, min_requests: 0}
`)
	g := p.Environments["p"].Gate
	if g.ErrorRate != (Percent{Value: 0, Set: true}) || g.P99.Duration != time.Second || g.Source != "prometheus" || g.NoData != "fail" || g.Count != 3 {
		t.Errorf("gate = %+v", *g)
	}
	// applyDefaults is idempotent.
	before := fmt.Sprintf("%+v", *p.Environments["p"])
	p.applyDefaults()
	if after := fmt.Sprintf("%+v", *p.Environments["p"]); after != before {
		t.Errorf("applyDefaults twice changed the plan:\n%s\n%s", before, after)
	}
}

func TestForms(t *testing.T) {
	p := mustParse(t, `app: shop
source:
  git: {repo: ./repo}
hooks:
  migrate: ./migrate.sh
  after_switch:
    - echo done
    - {run: ./smoke.sh, timeout: 30s, local: yes}
environments:
  staging: &env
    hosts: [{name: a, local: /a}]
    strategy: {wave_size: 25%, pause: 1m30s}
    gate: {error_rate: 1, p99: 250ms}
    auto_rollback: {error_rate: "0.5%", p99: 1s}
  production:
    <<: *env
    parallel: 4
`)
	if g := p.Source.Git; g == nil || g.Repo != filepath.Join(p.Dir, "repo") || g.Ref != "HEAD" {
		t.Errorf("git source = %+v", p.Source.Git)
	}
	if want := []Hook{{Run: "./migrate.sh", Timeout: Duration{10 * time.Minute}}}; !reflect.DeepEqual(p.Hooks.Migrate, want) {
		t.Errorf("migrate hooks = %+v", p.Hooks.Migrate)
	}
	want := []Hook{{Run: "echo done", Timeout: Duration{10 * time.Minute}}, {Run: "./smoke.sh", Timeout: Duration{30 * time.Second}, Local: true}}
	if !reflect.DeepEqual(p.Hooks.AfterSwitch, want) {
		t.Errorf("after_switch hooks = %+v", p.Hooks.AfterSwitch)
	}
	for _, name := range []string{"staging", "production"} {
		e := p.Environments[name]
		if e.Name != name || e.Strategy.WaveSize != (Size{Percent: 25, Set: true}) || e.Strategy.Pause.Duration != 90*time.Second {
			t.Errorf("%s: name %q strategy %+v", name, e.Name, e.Strategy)
		}
		if e.Gate.ErrorRate.Value != 1 || e.Gate.P99.Duration != 250*time.Millisecond || e.AutoRollback.ErrorRate.Value != 0.5 {
			t.Errorf("%s: gate %+v auto_rollback %+v", name, *e.Gate, *e.AutoRollback)
		}
	}
	if p.Environments["production"].Parallel != 4 || p.Environments["staging"].Parallel != 16 {
		t.Errorf("merge: parallel = %d/%d", p.Environments["production"].Parallel, p.Environments["staging"].Parallel)
	}
	ph, sh := p.Environments["production"].Hosts, p.Environments["staging"].Hosts
	if len(ph) != 1 || ph[0].Name != "a" || ph[0] == sh[0] {
		t.Errorf("merged hosts = %v; want their own copy of host a", ph)
	}
}

func TestSourceForms(t *testing.T) {
	for _, tt := range []struct{ src, dir, repo string }{
		{"source: /abs/build", "/abs/build", ""},
		{"source: {dir: out}", "out", ""},
		{"source: {git: {repo: \"https://example.test/shop.git\", ref: v1}}", "", "https://example.test/shop.git"},
		{"source: {git: {repo: \"git@example.test:shop.git\"}}", "", "git@example.test:shop.git"},
	} {
		p := mustParse(t, "app: shop\n"+tt.src+"\nenvironments: {p: {hosts: [{name: a, local: /a}]}}\n")
		dir := tt.dir
		if dir != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(p.Dir, dir)
		}
		if p.Source.Dir != dir {
			t.Errorf("%s: dir = %q; want %q", tt.src, p.Source.Dir, dir)
		}
		if (p.Source.Git == nil) != (tt.repo == "") || (p.Source.Git != nil && p.Source.Git.Repo != tt.repo) {
			t.Errorf("%s: git = %+v; want repo %q", tt.src, p.Source.Git, tt.repo)
		}
	}
}

func TestEnv(t *testing.T) {
	p := mustParse(t, head+`environments:
  staging: {hosts: [{name: a, local: /a}]}
  production: {hosts: [{name: a, local: /b}]}
`)
	if e, err := p.Env("production"); err != nil || e.Name != "production" {
		t.Errorf("Env(production) = %v, %v", e, err)
	}
	if _, err := p.Env(""); err == nil || !strings.Contains(err.Error(), "choose one of: staging, production") {
		t.Errorf("Env(\"\") with two environments: err = %v", err)
	}
	if _, err := p.Env("prodution"); err == nil || !strings.Contains(err.Error(), `did you mean "production"?`) {
		t.Errorf("Env(prodution): err = %v", err)
	}
}

func TestPromotionOrder(t *testing.T) {
	p := mustParse(t, head+`promotion: [production, staging]
environments:
  staging: {hosts: [{name: a, local: /a}]}
  production: {hosts: [{name: a, local: /b}]}
`)
	got := p.PromotionOrder()
	if !slices.Equal(got, []string{"production", "staging"}) {
		t.Fatalf("PromotionOrder = %v", got)
	}
	got[0] = "x"
	if p.Promotion[0] != "production" {
		t.Errorf("PromotionOrder returned the plan's own slice")
	}
}

func TestAutoPromote(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want bool
	}{{"", true}, {"auto_promote: true", true}, {"auto_promote: false", false}} {
		p := mustParse(t, head+"environments:\n  p:\n    hosts: [{name: a, local: /a}]\n    strategy: {"+tt.yaml+"}\n")
		if got := p.Environments["p"].AutoPromote(); got != tt.want {
			t.Errorf("%q: AutoPromote = %v", tt.yaml, got)
		}
	}
}

func TestSizeOf(t *testing.T) {
	tests := []struct {
		size Size
		n    int
		want int
	}{
		{Size{N: 2, Set: true}, 10, 2},
		{Size{N: 20, Set: true}, 10, 10},
		{Size{Percent: 25, Set: true}, 8, 2},
		{Size{Percent: 25, Set: true}, 10, 3},
		{Size{Percent: 1, Set: true}, 10, 1},
		{Size{Percent: 100, Set: true}, 7, 7},
		{Size{Percent: 33.3, Set: true}, 3, 1},
		{Size{Percent: 10, Set: true}, 30, 3},
		{Size{}, 5, 1},
		{Size{N: 3, Set: true}, 0, 0},
	}
	for _, tt := range tests {
		if got := tt.size.Of(tt.n); got != tt.want {
			t.Errorf("%v.Of(%d) = %d; want %d", tt.size, tt.n, got, tt.want)
		}
	}
}

func TestAliasCycleAndBomb(t *testing.T) {
	for _, src := range []string{
		"a: &a [*a]\n",
		"app: &a {<<: *a}\n",
		"environments: &e {p: *e}\n",
	} {
		_, err := Parse("flightdeck.yaml", []byte(src))
		if err == nil {
			t.Errorf("%q: no error", src)
		}
	}
	// Aliases multiply across the levels of the plan (environments ×
	// hosts × slots); the walk is cut off, not carried out.
	const n = 200
	var b strings.Builder
	b.WriteString("app: shop\nsource: ./b\nenvironments:\n  e0: &E\n    hosts:\n      - &H {name: a, local: /a, slots: {")
	for i := range n {
		fmt.Fprintf(&b, "s%d: x, ", i)
	}
	b.WriteString("}}\n")
	for range n - 1 {
		b.WriteString("      - *H\n")
	}
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  e%d: *E\n", i)
	}
	_, err := Parse("flightdeck.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("alias bomb: err = %.300v; want a too-large error", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(examplePlan))
	f.Add([]byte(head + "environments: {p: {hosts: [{name: a, ssh: u@h, deploy_to: /x}], strategy: {kind: canary, steps: [1, 100]}, gate: {source: prometheus}}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("x: &x {<<: [*x]}\nenvironments: {<<: *x}\n"))
	f.Add([]byte("app: shop\n\tsource: x\n"))
	f.Add([]byte("source: {git: {repo: r}, dir: d}\nhooks: {migrate: [{run: x, timeout: 5}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("flightdeck.yaml", data)
		if err == nil {
			if p == nil || len(p.EnvOrder) == 0 || p.KeepReleases < 2 {
				t.Fatalf("accepted plan is incomplete: %+v", p)
			}
			return
		}
		for _, e := range problems(t, err) {
			if e.Line < 1 || e.Column < 1 || e.Msg == "" {
				t.Fatalf("problem without a position or message: %+v", e)
			}
		}
	})
}

// The example in REFERENCE.md is a plan users copy: it must stay valid.
func TestReferenceExampleParses(t *testing.T) {
	doc, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Example\n\n```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("REFERENCE.md has no yaml example under ## Example")
	}
	p := mustParse(t, example)
	e, err := p.Env("production")
	if err != nil {
		t.Fatal(err)
	}
	if e.Strategy.Kind != Canary || e.Gate.ErrorRate.Value != 0.1 || e.AutoRollback.ErrorRate.Value != 1 || !e.NeedsApproval("promote") {
		t.Errorf("production = %+v", e)
	}
	if got := p.PromotionOrder(); !slices.Equal(got, []string{"staging", "production"}) {
		t.Errorf("PromotionOrder = %v", got)
	}
}

// BenchmarkParse measures decoding and validating a plan of 500 ssh hosts.
func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(head + "environments:\n  production:\n    deploy_to: /srv/shop\n    hosts:\n")
	for i := range 500 {
		fmt.Fprintf(&sb, "      - {name: web-%d, ssh: deploy@10.0.%d.%d, backend: \"10.0.%d.%d:8080\"}\n", i, i/250, i%250, i/250, i%250)
	}
	sb.WriteString("    strategy: {kind: rolling, wave_size: 10%, pause: 5s}\n")
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("flightdeck.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCohort(t *testing.T) {
	const env = head + `environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a, slots: {blue: "127.0.0.1:8081", green: "127.0.0.1:8082"}}]
    strategy:
      kind: ab
      cohort: `
	tests := []struct {
		cohort string
		want   string // "" for valid
	}{
		{`{header: X-Beta, value: "1"}`, ""},
		{`{cookie: beta, value: "yes"}`, ""},
		{`{header: X-User-Id, percent: 10}`, ""},
		{`{header: X-Beta, cookie: beta, value: "1"}`, `9:15: a cohort matches a header or a cookie, not both`},
		{`{value: "1"}`, `9:15: a cohort needs a header or a cookie`},
		{`{header: X-User-Id, percent: 0}`, `9:44: percent must be from 1 to 100, got 0`},
		{`{header: X-User-Id, percent: 10, value: x}`, `9:15: a cohort uses either value`},
		{`{header: X-User-Id}`, `9:15: a cohort needs value`},
	}
	for _, tt := range tests {
		_, err := Parse("flightdeck.yaml", []byte(env+tt.cohort+"\n"))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.cohort, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err = %v; want %q", tt.cohort, err, tt.want)
		}
	}
}

func TestURLs(t *testing.T) {
	_, err := Parse("flightdeck.yaml", []byte(head+`environments:
  p:
    router: {admin: "127.0.0.1:9901"}
    probe: {url: "ftp://x/"}
    hosts: [{name: a, local: /a}]
`))
	got := problems(t, err)
	if len(got) != 2 || !strings.Contains(got[0].Error(), `5:21: expected an http:// or https:// URL, got "127.0.0.1:9901"`) ||
		!strings.Contains(got[1].Error(), `6:18: expected an http:// or https:// URL, got "ftp://x/"`) {
		t.Errorf("err = %v", err)
	}
}

func TestErrorsUnwrap(t *testing.T) {
	_, err := Parse("flightdeck.yaml", []byte("app: [x]\nsource: 1\nbogus: 2\n"))
	var es Errors
	if !errors.As(err, &es) || len(es) < 2 {
		t.Fatalf("want several problems, got %v", err)
	}
	var first *Error
	if !errors.As(err, &first) || first != es[0] {
		t.Errorf("errors.As(*Error) = %v; want the first problem %v", first, es[0])
	}
}

// A parsed plan written back out with yaml.Marshal parses to the same plan.
func TestMarshalRoundTrip(t *testing.T) {
	p := mustParse(t, head+`environments:
  p:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a, backend: "127.0.0.1:8081"}]
    strategy: {kind: canary, wave_size: 25%, pause: 1m30s}
    auto_rollback: {p99: 300ms}
`)
	out1, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Parse(p.File, out1)
	if err != nil {
		t.Fatalf("re-parse of marshalled plan:\n%s\n%v", out1, err)
	}
	out2, err := yaml.Marshal(p2)
	if err != nil {
		t.Fatal(err)
	}
	if string(out1) != string(out2) {
		t.Errorf("round trip changed the plan:\n%s\n----\n%s", out1, out2)
	}
	e := p2.Environments["p"]
	if e.Strategy.WaveSize.String() != "25%" || e.Strategy.Pause.String() != "1m30s" || e.AutoRollback.ErrorRate.Set || e.Gate.ErrorRate.String() != "0.1%" {
		t.Errorf("round trip values: %+v %+v", e.Strategy, e.AutoRollback)
	}
	if e.Gate.ErrorRate.Fraction() != 0.001 {
		t.Errorf("Fraction = %v", e.Gate.ErrorRate.Fraction())
	}
}

// A plan built in code (no EnvOrder) still answers Env and PromotionOrder.
func TestPlanBuiltInCode(t *testing.T) {
	p := &Plan{Environments: map[string]*Environment{"b": {}, "a": {}}}
	p.applyDefaults()
	if !slices.Equal(p.PromotionOrder(), []string{"a", "b"}) || p.Environments["a"].Name != "a" || p.KeepReleases != 5 {
		t.Errorf("order %v, name %q, keep %d", p.PromotionOrder(), p.Environments["a"].Name, p.KeepReleases)
	}
	if _, err := p.Env(""); err == nil || !strings.Contains(err.Error(), "the release plan has 2 environments; choose one of: a, b") {
		t.Errorf("Env(\"\") = %v", err)
	}
}
