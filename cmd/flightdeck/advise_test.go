package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine/advise"
	"flightdeck/engine/plan"
)

// runAdvise runs the cobra command tree in this process with stdin that is
// not a terminal, and returns stdout, stderr and the exit code.
func runAdvise(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"advise"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return out.String(), errOut.String(), exitOK
	}
	return out.String(), err.Error(), exitCode(err)
}

func TestAdviseAcceptance(t *testing.T) {
	tests := []struct {
		args  []string
		title string
		kind  plan.StrategyKind
	}{
		{[]string{"--lb=false"}, "atomic symlink", plan.Symlink},
		{[]string{"--lb", "--double-capacity"}, "blue/green", plan.BlueGreen},
		{[]string{"--lb", "--double-capacity=false", "--fast-observability"}, "canary", plan.Canary},
		{[]string{"--lb", "--double-capacity=false", "--fast-observability=false"}, "rolling", plan.Rolling},
		{[]string{"--lb=true", "--double-capacity=true", "--fast-observability=false"}, "blue/green", plan.BlueGreen},
		{[]string{"--lb=false", "--feature"}, "atomic symlink + A/B on top", plan.Symlink},
		{[]string{"--lb", "--double-capacity", "--feature"}, "blue/green + A/B on top", plan.BlueGreen},
		{[]string{"--lb", "--double-capacity=false", "--fast-observability", "--feature"}, "canary + A/B on top", plan.Canary},
		{[]string{"--lb", "--double-capacity=false", "--fast-observability=false", "--feature=true"}, "rolling + A/B on top", plan.Rolling},
		{[]string{"--lb", "--double-capacity=false", "--fast-observability", "--feature=false"}, "canary", plan.Canary},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runAdvise(t, tt.args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "Recommended: "+tt.title+"\n") {
				t.Errorf("text does not recommend %q:\n%s", tt.title, out)
			}
			if !strings.Contains(out, "kind: "+string(tt.kind)) {
				t.Errorf("no %s starter plan:\n%s", tt.kind, out)
			}

			out, errOut, code = runAdvise(t, append(tt.args, "--json")...)
			if code != exitOK {
				t.Fatalf("--json exit %d: %s", code, errOut)
			}
			var got struct {
				Title     string
				Strategy  plan.StrategyKind
				AB        bool
				Cost      string
				Rollback  string
				Snippet   string
				ABSnippet string `json:"ab_snippet"`
				Answers   map[advise.Question]advise.Answer
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out)
			}
			if got.Title != tt.title || got.Strategy != tt.kind || got.Cost == "" || got.Rollback == "" {
				t.Errorf("json %+v, want %q (%s)", got, tt.title, tt.kind)
			}
			if got.AB != strings.Contains(tt.title, "A/B") || got.AB != (got.ABSnippet != "") {
				t.Errorf("json ab=%v ab_snippet=%q for %q", got.AB, got.ABSnippet, tt.title)
			}
			if got.Answers[advise.LoadBalancer].Source != advise.SourceFlag {
				t.Errorf("lb answer %+v, want from the flag", got.Answers[advise.LoadBalancer])
			}
			if _, err := plan.Parse(filepath.Join(t.TempDir(), "p.yaml"), []byte("app: a\nsource: ./b\n"+got.Snippet)); err != nil {
				t.Errorf("printed snippet does not parse: %v", err)
			}
		})
	}
}

func TestAdviseMissingAnswersIsBadInput(t *testing.T) {
	tests := []struct {
		args    []string
		missing []string
		absent  []string
	}{
		{nil, []string{"--lb", "--double-capacity", "--fast-observability"}, []string{"--feature"}},
		{[]string{"--lb"}, []string{"--double-capacity", "--fast-observability"}, []string{"--lb,"}},
		{[]string{"--lb", "--double-capacity=false"}, []string{"--fast-observability"}, []string{"--double-capacity"}},
		{[]string{"--double-capacity", "--feature"}, []string{"--lb"}, []string{"--fast-observability"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, msg, code := runAdvise(t, tt.args...)
			if code != exitBadInput {
				t.Fatalf("exit %d, want %d; out %q err %q", code, exitBadInput, out, msg)
			}
			for _, f := range tt.missing {
				if !strings.Contains(msg, f) {
					t.Errorf("error %q does not name %s", msg, f)
				}
			}
			for _, f := range tt.absent {
				if strings.Contains(msg, f) {
					t.Errorf("error %q names %s, which is answered or not needed", msg, f)
				}
			}
		})
	}
	if _, msg, code := runAdvise(t, "--lb=maybe"); code != exitBadInput {
		t.Errorf("--lb=maybe: exit %d (%s), want %d", code, msg, exitBadInput)
	}
}

// TestAdviseBinaryMissingFlags runs the real binary with stdin that is not a
// terminal: nobody can be asked, so it is bad input naming the flags.
func TestAdviseBinaryMissingFlags(t *testing.T) {
	cmd := exec.Command(binary, "advise", "--lb")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitBadInput {
		t.Fatalf("advise --lb: %v, want exit %d; stderr %s", err, exitBadInput, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--double-capacity") {
		t.Errorf("stderr does not name --double-capacity: %s", stderr.String())
	}
}

func TestAdviseFromPlan(t *testing.T) {
	p := newProject(t, 2, 1, "      kind: bluegreen\n", "")
	// Give the hosts slots and the environment a router and a gate.
	src := strings.Replace(readFile(t, p.plan), "  production:\n", "  production:\n    router: {admin: \"http://127.0.0.1:9901\"}\n    gate: {error_rate: 0.5%}\n", 1)
	for i := 1; i <= 2; i++ {
		host := "local: " + p.host(i)
		src = strings.Replace(src, host+"\n", host+"\n        slots: {blue: \"127.0.0.1:1808"+string(rune('0'+i))+"\", green: \"127.0.0.1:1809"+string(rune('0'+i))+"\"}\n", 1)
	}
	writeFile(t, p.plan, src)
	if _, err := plan.Load(p.plan); err != nil {
		t.Fatalf("test plan: %v\n%s", err, src)
	}

	out, msg, code := runAdvise(t, "-f", p.plan)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	for _, want := range []string{
		"Recommended: blue/green\n",
		"from the plan: router at http://127.0.0.1:9901, 2 of 2 hosts",
		"from the plan: 2 of 2 hosts have blue/green slots",
		"from the plan: an SLO gate",
		"default: shipping a release",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Flags win over the plan.
	out, msg, code = runAdvise(t, "-f", p.plan, "--double-capacity=false", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var r advise.Recommendation
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Strategy != plan.Canary {
		t.Errorf("strategy %s, want canary (flag says no double capacity, plan has a gate)", r.Strategy)
	}
	if a := r.Answers[advise.DoubleCapacity]; a.Source != advise.SourceFlag || a.Yes {
		t.Errorf("double capacity %+v, want no from the flag", a)
	}
	if a := r.Answers[advise.FastObservability]; a.Source != advise.SourcePlan || !a.Yes {
		t.Errorf("observability %+v, want yes from the plan", a)
	}

	// Without -f, the plan in the current directory is not read.
	if _, msg, code := runAdvise(t); code != exitBadInput {
		t.Errorf("no -f: exit %d (%s), want bad input", code, msg)
	}

	// A missing or broken plan is bad input.
	if _, msg, code := runAdvise(t, "-f", filepath.Join(p.dir, "nope.yaml")); code != exitBadInput {
		t.Errorf("missing plan: exit %d (%s)", code, msg)
	}
	writeFile(t, p.plan, "app: shop\nsource: ./build\nenvironments:\n  production:\n    hostz: []\n")
	if _, msg, code := runAdvise(t, "-f", p.plan, "--lb=false"); code != exitBadInput || !strings.Contains(msg, ":5:5:") {
		t.Errorf("bad plan: exit %d (%s), want 2 with file:line:col", code, msg)
	}
}

func TestAdviseSnippetUsesPlanEnvironment(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "flightdeck.yaml")
	writeFile(t, pf, "app: shop\nsource: ./build\nenvironments:\n  staging:\n    hosts: [{name: s1, local: ./s1}]\n  edge:\n    hosts: [{name: e1, local: ./e1}]\n")
	if _, msg, code := runAdvise(t, "-f", pf); code != exitBadInput || !strings.Contains(msg, "choose one of") {
		t.Errorf("two environments without --env: exit %d (%s)", code, msg)
	}
	out, msg, code := runAdvise(t, "-f", pf, "--env", "edge")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if !strings.Contains(out, "Recommended: atomic symlink") || !strings.Contains(out, "from the plan: one host and no router") {
		t.Errorf("one local host should read as no load balancer:\n%s", out)
	}
	if !strings.Contains(out, "\n  edge:\n") {
		t.Errorf("snippet is not for environment edge:\n%s", out)
	}
}

func TestAskAdvice(t *testing.T) {
	tests := []struct {
		name  string
		start advise.Answers
		input string
		want  plan.StrategyKind
		ab    bool
		asked int
	}{
		{"asks lb only when there is none", advise.Answers{}, "n\nyes\n", plan.Symlink, true, 2},
		{"asks until decided, retrying bad answers", advise.Answers{}, "maybe\nY\nno\ny\nN\n", plan.Canary, false, 4},
		{"skips answered questions", advise.Answers{advise.LoadBalancer: {Yes: true, Source: advise.SourcePlan, Why: "router"}}, "y\nn\n", plan.BlueGreen, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := askAdvice(context.Background(), strings.NewReader(tt.input), &out, tt.start); err != nil {
				t.Fatal(err)
			}
			r, err := advise.Recommend(tt.start)
			if err != nil {
				t.Fatal(err)
			}
			if r.Strategy != tt.want || r.AB != tt.ab {
				t.Errorf("got %s ab=%v, want %s ab=%v", r.Strategy, r.AB, tt.want, tt.ab)
			}
			if n := strings.Count(out.String(), "[y/n]"); n != tt.asked+strings.Count(out.String(), "Please answer") {
				t.Errorf("asked %d times:\n%s", n, out.String())
			}
			if tt.start[advise.LoadBalancer].Source == advise.SourcePlan &&
				(strings.Contains(out.String(), advise.LoadBalancer.Text()+" [y/n]") || !strings.Contains(out.String(), "(from the plan: router)")) {
				t.Errorf("a plan answer was asked again or not shown:\n%s", out.String())
			}
		})
	}

	// Input that ends before an answer is bad input.
	err := askAdvice(context.Background(), strings.NewReader("y\n"), &bytes.Buffer{}, advise.Answers{})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitBadInput {
		t.Errorf("ended input: %v", err)
	}

	// A cancelled context (Ctrl-C) ends a prompt that is still waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	blocked := &blockingReader{done: make(chan struct{})}
	defer close(blocked.done)
	if err := askAdvice(ctx, blocked, &bytes.Buffer{}, advise.Answers{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled prompt: %v", err)
	}
}

// blockingReader blocks every read until done is closed, like a terminal
// nobody types into.
type blockingReader struct{ done chan struct{} }

func (b *blockingReader) Read([]byte) (int, error) {
	<-b.done
	return 0, errors.New("closed")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdviseAsksOnATerminal runs the binary on a pseudo-terminal (through
// util-linux's script) and answers the questions it asks.
func TestAdviseAsksOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("script (Debian package util-linux) is needed for this test")
		}
		t.Skip("script not found: install the Debian package util-linux")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qec", binary+" advise --lb", "/dev/null")
	cmd.Stdin = strings.NewReader("n\ny\nn\n")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("advise on a terminal: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		advise.DoubleCapacity.Text() + " [y/n]",
		advise.FastObservability.Text() + " [y/n]",
		advise.Feature.Text() + " [y/n]",
		"Recommended: canary\n",
		"(flag --lb)",
		"(prompt)",
	} {
		if !strings.Contains(strings.ReplaceAll(s, "\r\n", "\n"), want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, advise.LoadBalancer.Text()) {
		t.Errorf("asked the question --lb answered:\n%s", s)
	}
}
