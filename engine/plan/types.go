// Package plan reads and validates flightdeck release plans (flightdeck.yaml).
//
// A plan is decoded from YAML with every unknown key rejected and every
// error reported as file:line:column, so that a typo can never silently
// disable a safety setting.
package plan

import (
	"fmt"
	"time"
)

// Plan is a whole release plan file.
type Plan struct {
	// File is the path the plan was read from (not part of the YAML).
	File string `yaml:"-"`
	// Dir is the absolute directory holding the plan file; relative paths
	// (source, hosts' local, ssh and router files) are resolved against it
	// by Parse, so they are absolute in a parsed plan.
	Dir string `yaml:"-"`

	App         string   `yaml:"app"`
	Source      *Source  `yaml:"source"`
	Build       []string `yaml:"build"`
	BuildOutput string   `yaml:"build_output"`
	// AllowEmpty lets a release hold no files (a deploy of nothing is
	// refused otherwise: it is almost always a source that went wrong).
	AllowEmpty   bool `yaml:"allow_empty"`
	KeepReleases int  `yaml:"keep_releases"`
	// VerifyReleases is how a release already on a host is verified
	// against its manifest (the rollback-path check before a deploy):
	// "changed" (hash only files whose stamp changed since the host's last
	// verification) or "full" (hash every file).
	VerifyReleases string `yaml:"verify_releases"`
	Restart        string `yaml:"restart"`
	// RestartTimeout bounds the restart command on each host (default 5m).
	RestartTimeout Duration `yaml:"restart_timeout"`
	Health         *Health  `yaml:"health"`
	Hooks          Hooks    `yaml:"hooks"`
	Promotion      []string `yaml:"promotion"`
	// Migrations are migration files (or globs) scanned for destructive
	// statements before a rolling or canary deploy.
	Migrations []string `yaml:"migrations"`
	// Smoke checks run against the new release before traffic is promoted.
	Smoke []SmokeCheck `yaml:"smoke"`
	// CacheNamespaceEnv names the variable the service reports on /version
	// as its cache namespace; it must equal RELEASE_VERSION.
	CacheNamespaceEnv string `yaml:"cache_namespace_env"`
	// Checklist configures the production checklist.
	Checklist *Checklist `yaml:"checklist"`
	// State says where the journal and the environment locks live; without
	// it they are files under .flightdeck/ beside the plan.
	State        *State                  `yaml:"state"`
	Environments map[string]*Environment `yaml:"environments"`
	// EnvOrder is the order environments appear in the file.
	EnvOrder []string `yaml:"-"`
}

// Source says where a release's content comes from: a directory, or a git
// repository at a ref. In YAML it is either a plain string (a directory) or a
// mapping {git: {repo, ref}} / {dir: PATH}.
type Source struct {
	Dir string     `yaml:"dir"`
	Git *GitSource `yaml:"git"`
}

// GitSource is a git repository (local path or URL) and a ref to check out.
type GitSource struct {
	Repo string `yaml:"repo"`
	Ref  string `yaml:"ref"`
}

// SmokeCheck is one post-deploy smoke test: an HTTP GET ({backend} and
// {host} are replaced) with an expected status and body text, or a command.
type SmokeCheck struct {
	Name    string   `yaml:"name"`
	URL     string   `yaml:"url"`
	Status  int      `yaml:"status"` // default 200
	Body    string   `yaml:"body"`   // text the body must contain
	Run     string   `yaml:"run"`    // a command instead of a URL (runs on the host)
	Timeout Duration `yaml:"timeout"`
}

// State names a shared state backend for the journal and the locks.
type State struct {
	Etcd *EtcdState `yaml:"etcd"`
}

// EtcdState keeps the journal and the locks in an etcd cluster, so that
// several control machines share them.
type EtcdState struct {
	// Endpoints are the members' client addresses: host:port or
	// http(s)://host:port.
	Endpoints []string `yaml:"endpoints"`
	// Prefix of every flightdeck key (default /flightdeck).
	Prefix   string `yaml:"prefix"`
	Username string `yaml:"username"`
	// PasswordFile holds the user's password (FLIGHTDECK_ETCD_PASSWORD
	// overrides it).
	PasswordFile string `yaml:"password_file"`
	// Password is refused: a password in the plan ends up in version control.
	Password string   `yaml:"password"`
	TLS      *EtcdTLS `yaml:"tls"`
	// Lease is the lock lease's time to live (default 10s).
	Lease Duration `yaml:"lease"`
}

// EtcdTLS are the PEM files of a TLS connection to etcd.
type EtcdTLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// Checklist configures the production checklist.
type Checklist struct {
	// Required items block promotion while failed or unacknowledged.
	Required []string `yaml:"required"`
}

// Health is an HTTP health check run against a host after its switch.
type Health struct {
	URL      string   `yaml:"url"`      // may contain {{.Host}}, {{.Port}}
	Timeout  Duration `yaml:"timeout"`  // total time to become healthy, default 30s
	Interval Duration `yaml:"interval"` // default 200ms
}

// Hooks are commands run at points of a release. Each runs with
// RELEASE_VERSION, RELEASE_PATH, PREVIOUS_RELEASE, ENVIRONMENT and HOST set.
type Hooks struct {
	BeforePrepare []Hook `yaml:"before_prepare"`
	AfterPrepare  []Hook `yaml:"after_prepare"`
	Migrate       []Hook `yaml:"migrate"`
	BeforeSwitch  []Hook `yaml:"before_switch"`
	AfterSwitch   []Hook `yaml:"after_switch"`
	AfterRollback []Hook `yaml:"after_rollback"`
	OnFailure     []Hook `yaml:"on_failure"`
}

// Hook is one command. In YAML either a string or {run, timeout, local}.
type Hook struct {
	Run     string   `yaml:"run"`
	Timeout Duration `yaml:"timeout"`
	// Local runs the hook on this machine instead of on each host.
	Local bool `yaml:"local"`
}

// Environment is one target environment: its hosts and how to release to them.
type Environment struct {
	Name            string        `yaml:"-"`
	DeployTo        string        `yaml:"deploy_to"`
	Hosts           []*Host       `yaml:"hosts"`
	Strategy        Strategy      `yaml:"strategy"`
	SSH             *SSHConfig    `yaml:"ssh"`
	Router          *RouterConfig `yaml:"router"`
	Gate            *Gate         `yaml:"gate"`
	AutoRollback    *AutoRollback `yaml:"auto_rollback"`
	Probe           *Probe        `yaml:"probe"`
	Parallel        int           `yaml:"parallel"` // max hosts worked on at once (prepare, starting an idle slot), default 16
	RequireApproval []string      `yaml:"require_approval"`
}

// Host is one deploy target: a directory on this machine (Local) or a server
// reached over SSH.
type Host struct {
	Name     string `yaml:"name"`
	Local    string `yaml:"local"`     // directory on this machine; it is the deploy_to (absolute after Parse)
	SSH      string `yaml:"ssh"`       // user@address:port or an ~/.ssh/config alias
	DeployTo string `yaml:"deploy_to"` // for SSH hosts; Parse fills in the environment's when unset
	// Backend is the address (host:port) the router sends this host's traffic to.
	Backend string `yaml:"backend"`
	// Slots are blue/green backends: {blue: addr, green: addr}.
	Slots map[string]string `yaml:"slots"`

	// Line and Column locate the host entry in the plan file.
	Line   int `yaml:"-"`
	Column int `yaml:"-"`
}

// StrategyKind names a release strategy.
type StrategyKind string

// The strategies.
const (
	Symlink   StrategyKind = "symlink"
	Rolling   StrategyKind = "rolling"
	Canary    StrategyKind = "canary"
	BlueGreen StrategyKind = "bluegreen"
	AB        StrategyKind = "ab"
)

// Strategy configures how a release moves through an environment.
type Strategy struct {
	Kind StrategyKind `yaml:"kind"`
	// WaveSize is hosts per wave (rolling): a count or a percentage like "25%".
	WaveSize Size `yaml:"wave_size"`
	// MaxUnavailable bounds hosts out of rotation at once (rolling).
	MaxUnavailable Size `yaml:"max_unavailable"`
	// Pause between waves.
	Pause Duration `yaml:"pause"`
	// OnFailure is "rollback" (default) or "halt".
	OnFailure string `yaml:"on_failure"`
	// Steps are canary traffic percentages, e.g. [1, 5, 25, 100].
	Steps       []int `yaml:"steps"`
	AutoPromote *bool `yaml:"auto_promote"`
	// KeepWarm is how long blue/green keeps the old colour running.
	KeepWarm Duration `yaml:"keep_warm"`
	// Drain is how long long-lived connections may take to finish.
	Drain Duration `yaml:"drain"`
	// Cohort is the A/B rule.
	Cohort *Cohort `yaml:"cohort"`
}

// Cohort selects A/B users: a header or cookie match, or a stable hash of a
// user key with a percentage.
type Cohort struct {
	Header  string `yaml:"header"`
	Cookie  string `yaml:"cookie"`
	Value   string `yaml:"value"`
	Percent int    `yaml:"percent"`
}

// SSHConfig holds per-environment SSH settings.
type SSHConfig struct {
	IdentityFile      string   `yaml:"identity_file"`
	KnownHosts        string   `yaml:"known_hosts"`
	AcceptNewHostKeys bool     `yaml:"accept_new_host_keys"`
	ConnectTimeout    Duration `yaml:"connect_timeout"`
	CommandTimeout    Duration `yaml:"command_timeout"`
	MaxParallelDials  int      `yaml:"max_parallel_dials"`
	Jump              string   `yaml:"jump"`
	// Persist keeps the connections open between commands for this long
	// after the last one used them, in a connection keeper process (as
	// OpenSSH's ControlPersist); 0, the default, dials in every command.
	Persist Duration `yaml:"persist"`
	// ControlDir is the keeper's private directory (absolute or ~/…;
	// default $XDG_RUNTIME_DIR/flightdeck, else ~/.cache/flightdeck/ssh).
	ControlDir string `yaml:"control_dir"`
}

// Router kinds: the traffic layer an environment's traffic strategies drive.
const (
	// RouterFlightdeck is the built-in router (`flightdeck router`), driven
	// through its admin API. It is the default.
	RouterFlightdeck = "flightdeck"
	// RouterHAProxy is an HAProxy driven through its Runtime API.
	RouterHAProxy = "haproxy"
	// RouterNginx is an nginx driven through an upstream file flightdeck
	// owns and graceful reloads.
	RouterNginx = "nginx"
)

// RouterConfig says which traffic layer the environment uses and how to
// reach it. Kind picks the layer; each layer has its own keys (see
// REFERENCE.md), and a key of another kind is an error.
type RouterConfig struct {
	Kind   string   `yaml:"kind"`   // flightdeck (default) | haproxy | nginx
	Listen string   `yaml:"listen"` // public address, for probes
	Drain  Duration `yaml:"drain"`  // drain timeout, default 30s

	// kind: flightdeck
	Admin     string `yaml:"admin,omitempty"`      // admin API base URL, e.g. http://127.0.0.1:9901
	TokenFile string `yaml:"token_file,omitempty"` // bearer token file

	// kind: haproxy
	// Socket is the Runtime API: a unix socket path or host:port.
	Socket string `yaml:"socket,omitempty"`
	// Backend is the HAProxy backend holding every server the plan names.
	Backend string `yaml:"backend,omitempty"`
	// CohortBackend holds the same servers; requests the cohort map sends
	// there reach only the cohort's release (A/B).
	CohortBackend string `yaml:"cohort_backend,omitempty"`
	// CohortMap is the map file (as HAProxy loaded it) from cohort key to
	// backend name.
	CohortMap string `yaml:"cohort_map,omitempty"`
	// LogRing is the HAProxy ring the request log goes to (latency).
	LogRing string `yaml:"log_ring,omitempty"`
	// StateFile keeps the adapter's pools and route (default: in the state
	// directory).
	StateFile string `yaml:"state_file,omitempty"`

	// kind: nginx
	// UpstreamFile is the file flightdeck owns and the operator includes.
	UpstreamFile string `yaml:"upstream_file,omitempty"`
	// Upstream is the name of the upstream block written there.
	Upstream string `yaml:"upstream,omitempty"`
	// MapFile is the cohort map include (A/B).
	MapFile       string `yaml:"map_file,omitempty"`
	TestCommand   string `yaml:"test_command,omitempty"`   // default "nginx -t"
	ReloadCommand string `yaml:"reload_command,omitempty"` // default "nginx -s reload"
	PIDFile       string `yaml:"pid_file,omitempty"`       // default /run/nginx.pid
	// AccessLog is the log written with flightdeck's log_format (metrics).
	AccessLog  string `yaml:"access_log,omitempty"`
	HealthPath string `yaml:"health_path,omitempty"` // default /healthz
}

// KindOrDefault is the router's kind, flightdeck when unset.
func (r *RouterConfig) KindOrDefault() string {
	if r == nil || r.Kind == "" {
		return RouterFlightdeck
	}
	return r.Kind
}

// Configured reports whether the environment has a traffic layer to drive:
// the built-in router's admin URL, HAProxy's socket or nginx's upstream file.
func (r *RouterConfig) Configured() bool {
	if r == nil {
		return false
	}
	switch r.KindOrDefault() {
	case RouterHAProxy:
		return r.Socket != ""
	case RouterNginx:
		return r.UpstreamFile != ""
	}
	return r.Admin != ""
}

// Describe names the traffic layer in words, for the run's header and
// the journal: "HAProxy backend app at /run/haproxy/admin.sock".
func (r *RouterConfig) Describe() string {
	if !r.Configured() {
		return "none"
	}
	switch r.KindOrDefault() {
	case RouterHAProxy:
		return fmt.Sprintf("HAProxy backend %s at %s", r.Backend, r.Socket)
	case RouterNginx:
		return fmt.Sprintf("nginx upstream %s in %s", r.Upstream, r.UpstreamFile)
	}
	return "router at " + r.Admin
}

// Gate is an SLO gate evaluated at each analysis step.
type Gate struct {
	Source       string      `yaml:"source"` // router (default) | prometheus
	Prometheus   *Prometheus `yaml:"prometheus"`
	ErrorRate    Percent     `yaml:"error_rate"` // default 0.1%
	P99          Duration    `yaml:"p99"`        // default 200ms
	Interval     Duration    `yaml:"interval"`
	Count        int         `yaml:"count"`
	FailureLimit int         `yaml:"failure_limit"`
	Cumulative   bool        `yaml:"cumulative"`
	MinRequests  int         `yaml:"min_requests"`
	NoData       string      `yaml:"no_data"` // hold | fail | pass
}

// Prometheus names a Prometheus server and PromQL templates ({{.Release}}).
type Prometheus struct {
	URL       string `yaml:"url"`
	ErrorRate string `yaml:"error_rate"`
	P99       string `yaml:"p99"`
	Requests  string `yaml:"requests"`
}

// AutoRollback is the automatic rollback trigger.
type AutoRollback struct {
	ErrorRate Percent  `yaml:"error_rate"`
	P99       Duration `yaml:"p99"`
	For       Duration `yaml:"for"`
}

// Probe is synthetic traffic sent during a deploy window.
type Probe struct {
	URL     string   `yaml:"url"`
	Rate    int      `yaml:"rate"`
	Timeout Duration `yaml:"timeout"`
	// Settle keeps probing this long after the last switch, so that the
	// report covers the fleet running the new release (default 0).
	Settle Duration `yaml:"settle"`
	// UserHeader gives each probe request a synthetic user id in this
	// header, so sticky and A/B cohort routing see a population of users.
	UserHeader string `yaml:"user_header"`
}

// Duration is a time.Duration written as "30s", "1m30s" or "250ms".
type Duration struct{ time.Duration }

// Size is a count of hosts or a percentage of them ("25%").
type Size struct {
	N       int
	Percent float64
	Set     bool
}

// Percent is a percentage written as "0.1%" or a plain number of percent.
type Percent struct {
	Value float64 // in percent: 0.1 means 0.1 %
	Set   bool
}
