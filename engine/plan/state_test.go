package plan

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateEtcd(t *testing.T) {
	const envs = "environments: {p: {hosts: [{name: a, local: /a}]}}\n"
	p := mustParse(t, head+`state:
  etcd:
    endpoints: [127.0.0.1:2379, "https://10.0.0.2:2379"]
    prefix: /teams/shop
    username: deployer
    password_file: secrets/etcd-password
    tls: {ca: ca.pem, cert: client.pem, key: client-key.pem}
    lease: 15s
`+envs)
	e := p.State.Etcd
	if len(e.Endpoints) != 2 || e.Prefix != "/teams/shop" || e.Username != "deployer" || e.Lease.Duration != 15*time.Second {
		t.Errorf("etcd state = %+v", e)
	}
	if !filepath.IsAbs(e.PasswordFile) || !filepath.IsAbs(e.TLS.CA) || !filepath.IsAbs(e.TLS.Key) {
		t.Errorf("paths not resolved against the plan's directory: %q %q %q", e.PasswordFile, e.TLS.CA, e.TLS.Key)
	}
	if p := mustParse(t, head+envs); p.State != nil {
		t.Errorf("state without the key: %+v", p.State)
	}

	tests := []struct {
		name, state string
		want        []string
	}{
		{"no backend", "state: {}\n", []string{`3:1: state names no backend`}},
		{"no endpoints", "state: {etcd: {prefix: /x}}\n", []string{`3:15: state.etcd needs endpoints`}},
		{"bad endpoints", "state: {etcd: {endpoints: [localhost, \"ftp://h:1\", \"h:2379\"]}}\n",
			[]string{`3:28: expected host:port`, `3:39: expected host:port or http(s)://host:port`}},
		{"bad prefix", "state: {etcd: {endpoints: [h:1], prefix: flightdeck/}}\n", []string{`3:42: prefix must start with /`}},
		{"password in the plan", "state: {etcd: {endpoints: [h:1], username: u, password: hunter2}}\n",
			[]string{`3:47: a password in the plan ends up in version control`}},
		{"password file without user", "state: {etcd: {endpoints: [h:1], password_file: p}}\n", []string{`3:49: password_file needs a username`}},
		{"short lease", "state: {etcd: {endpoints: [h:1], lease: 1s}}\n", []string{`3:41: lease must be whole seconds, at least 2s`}},
		{"fractional lease", "state: {etcd: {endpoints: [h:1], lease: 2500ms}}\n", []string{`3:41: lease must be whole seconds`}},
		{"cert without key", "state: {etcd: {endpoints: [h:1], tls: {cert: c.pem}}}\n", []string{`3:39: a client certificate needs both cert and key`}},
		{"typo", "state: {etcd: {endpoint: [h:1]}}\n", []string{`3:15: state.etcd needs endpoints`, `3:16: unknown key "endpoint" (did you mean "endpoints"?)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("flightdeck.yaml", []byte(head+tt.state+envs))
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			got := problems(t, err)
			var msgs []string
			for _, g := range got {
				msgs = append(msgs, g.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(msgs, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(msgs[i], w) {
					t.Errorf("problem %d = %q; want it to contain %q", i, msgs[i], w)
				}
			}
		})
	}
}
