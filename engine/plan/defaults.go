package plan

import (
	"slices"
	"time"
)

// Defaults applied to keys left out of a plan (see REFERENCE.md).
const (
	DefaultKeepReleases     = 5
	DefaultRestartTimeout   = 5 * time.Minute
	DefaultParallel         = 16
	DefaultOnFailure        = "rollback"
	DefaultVerifyReleases   = VerifyChanged
	DefaultGitRef           = "HEAD"
	DefaultHealthTimeout    = 30 * time.Second
	DefaultHealthInterval   = 200 * time.Millisecond
	DefaultHookTimeout      = 10 * time.Minute
	DefaultErrorRate        = 0.1 // percent
	DefaultP99              = 200 * time.Millisecond
	DefaultGateInterval     = 10 * time.Second
	DefaultGateCount        = 3
	DefaultFailureLimit     = 1
	DefaultMinRequests      = 50
	DefaultGateSource       = "router"
	DefaultNoData           = "hold"
	DefaultDrain            = 30 * time.Second
	DefaultKeepWarm         = 10 * time.Minute
	DefaultConnectTimeout   = 10 * time.Second
	DefaultCommandTimeout   = 5 * time.Minute
	DefaultMaxParallelDials = 64
	DefaultAutoRollbackFor  = 30 * time.Second
	DefaultProbeRate        = 10
	DefaultProbeTimeout     = 2 * time.Second
	DefaultNginxTest        = "nginx -t"
	DefaultNginxReload      = "nginx -s reload"
	DefaultNginxPIDFile     = "/run/nginx.pid"
	DefaultHealthPath       = "/healthz"
)

// The values of verify_releases.
const (
	// VerifyChanged hashes only the files of a release whose stamp
	// (device, inode, size, mode, modification time) changed since the
	// host's last verification.
	VerifyChanged = "changed"
	// VerifyFull hashes every file of the release.
	VerifyFull = "full"
)

// DefaultCanarySteps are the canary traffic percentages used when a canary
// strategy gives no steps.
func DefaultCanarySteps() []int { return []int{1, 5, 25, 100} }

// applyDefaults fills every key left out of the plan with its default, so
// that callers never see a zero value for a tunable. It is idempotent.
func (p *Plan) applyDefaults() {
	if p.RestartTimeout.Duration == 0 {
		p.RestartTimeout.Duration = DefaultRestartTimeout
	}
	if p.KeepReleases == 0 {
		p.KeepReleases = DefaultKeepReleases
	}
	if p.VerifyReleases == "" {
		p.VerifyReleases = DefaultVerifyReleases
	}
	if p.Source != nil && p.Source.Git != nil && p.Source.Git.Ref == "" {
		p.Source.Git.Ref = DefaultGitRef
	}
	if h := p.Health; h != nil {
		setDur(&h.Timeout, DefaultHealthTimeout)
		setDur(&h.Interval, DefaultHealthInterval)
	}
	for _, list := range p.Hooks.all() {
		for i := range list.hooks {
			setDur(&list.hooks[i].Timeout, DefaultHookTimeout)
		}
	}
	if len(p.EnvOrder) != len(p.Environments) {
		p.EnvOrder = p.envNames()
	}
	for name, e := range p.Environments {
		if e == nil {
			e = &Environment{}
			p.Environments[name] = e
		}
		if e.Name == "" {
			e.Name = name
		}
		e.applyDefaults()
	}
}

func (e *Environment) applyDefaults() {
	if e.Parallel == 0 {
		e.Parallel = DefaultParallel
	}
	s := &e.Strategy
	if s.Kind == "" {
		s.Kind = Rolling
	}
	if !s.WaveSize.Set {
		s.WaveSize = Size{N: 1, Set: true}
	}
	if !s.MaxUnavailable.Set {
		s.MaxUnavailable = s.WaveSize
	}
	if s.OnFailure == "" {
		s.OnFailure = DefaultOnFailure
	}
	if s.Kind == Canary && len(s.Steps) == 0 {
		s.Steps = DefaultCanarySteps()
	}
	setDur(&s.KeepWarm, DefaultKeepWarm)
	setDur(&s.Drain, DefaultDrain)
	for _, h := range e.Hosts {
		if h != nil && h.SSH != "" && h.DeployTo == "" {
			h.DeployTo = e.DeployTo
		}
	}
	if e.Gate == nil && (s.Kind == Canary || s.Kind == AB) {
		// A canary always has analysis; without a gate there is nothing to
		// decide a step with.
		e.Gate = &Gate{}
	}
	if g := e.Gate; g != nil {
		if g.Source == "" {
			g.Source = DefaultGateSource
		}
		if !g.ErrorRate.Set {
			g.ErrorRate = Percent{Value: DefaultErrorRate, Set: true}
		}
		setDur(&g.P99, DefaultP99)
		setDur(&g.Interval, DefaultGateInterval)
		setInt(&g.Count, DefaultGateCount)
		setInt(&g.FailureLimit, DefaultFailureLimit)
		setInt(&g.MinRequests, DefaultMinRequests)
		if g.NoData == "" {
			g.NoData = DefaultNoData
		}
	}
	if r := e.Router; r != nil {
		setDur(&r.Drain, DefaultDrain)
		if r.Kind == "" {
			r.Kind = RouterFlightdeck
		}
		if r.Kind == RouterNginx {
			setStr(&r.TestCommand, DefaultNginxTest)
			setStr(&r.ReloadCommand, DefaultNginxReload)
			setStr(&r.PIDFile, DefaultNginxPIDFile)
			setStr(&r.HealthPath, DefaultHealthPath)
		}
	}
	if c := e.SSH; c != nil {
		setDur(&c.ConnectTimeout, DefaultConnectTimeout)
		setDur(&c.CommandTimeout, DefaultCommandTimeout)
		setInt(&c.MaxParallelDials, DefaultMaxParallelDials)
	}
	if a := e.AutoRollback; a != nil {
		setDur(&a.For, DefaultAutoRollbackFor)
	}
	if pr := e.Probe; pr != nil {
		setInt(&pr.Rate, DefaultProbeRate)
		setDur(&pr.Timeout, DefaultProbeTimeout)
	}
}

func setDur(d *Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

func setStr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setInt(i *int, def int) {
	if *i == 0 {
		*i = def
	}
}

// hookList is one named list of hooks.
type hookList struct {
	key   string
	hooks []Hook
}

// all returns every hook list with its YAML key, in run order.
func (h *Hooks) all() []hookList {
	return []hookList{
		{"before_prepare", h.BeforePrepare},
		{"after_prepare", h.AfterPrepare},
		{"migrate", h.Migrate},
		{"before_switch", h.BeforeSwitch},
		{"after_switch", h.AfterSwitch},
		{"after_rollback", h.AfterRollback},
		{"on_failure", h.OnFailure},
	}
}

// validKinds lists the strategies in the order they are documented.
func validKinds() []string {
	return []string{string(Symlink), string(Rolling), string(Canary), string(BlueGreen), string(AB)}
}

func isKind(k StrategyKind) bool { return slices.Contains(validKinds(), string(k)) }
