package serve

import (
	"strings"
	"testing"

	"flightdeck/engine"
)

// FuzzParseKeys feeds arbitrary files to the authorized-keys parser: it
// must not panic, errors name the file and a line, and what it accepts
// holds only valid, distinct display names and known roles, each key
// found again by Lookup. Run for longer with
//
//	go test -run '^$' -fuzz FuzzParseKeys -fuzztime 1m ./serve/
func FuzzParseKeys(f *testing.F) {
	const k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQUDZWhs8k/cZcykMkaoX7ZE7DnqC5z8AbB4xqRyQd"
	const k2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPyrRAQKXEt2ZzsjXTpCQiDjJzqxuBtw9lqwPEQoVpH2"
	for _, seed := range []string{
		k1 + " alice@laptop role=operator\n" + k2 + " bob name=bob role=owner\n",
		`environment="FLIGHTDECK_ROLE=operator",environment="FLIGHTDECK_NAME=alice" ` + k1 + " x\n",
		"# comment\n\n" + k1 + "\n",
		"restrict,no-agent-forwarding " + k1 + " carol role=viewer\n",
		`from="10.0.0.1" ` + k1 + " dan\n",
		k1 + " alice\n" + k1 + " bob\n",
		k1 + " alice\n" + k2 + " Alice\n",
		`environment="FLIGHTDECK_NAME=a` + "\u202e" + `b" ` + k1 + "\n",
		k1 + " name=\xff\xfe\n",
		"ssh-ed25519 notbase64 x\n",
		k1 + " " + k2 + "\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseKeys("ak", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ak:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		names := map[string]bool{}
		for _, id := range ks.Identities() {
			if err := validName(id.Name); err != nil {
				t.Fatalf("accepted name %q: %v", id.Name, err)
			}
			if names[strings.ToLower(id.Name)] {
				t.Fatalf("accepted the name %q twice", id.Name)
			}
			names[strings.ToLower(id.Name)] = true
			if _, err := engine.ParseRole(string(id.Role)); err != nil {
				t.Fatalf("accepted role %q", id.Role)
			}
			if !strings.HasPrefix(id.Fingerprint, "SHA256:") {
				t.Fatalf("fingerprint %q", id.Fingerprint)
			}
		}
		for _, w := range ks.order {
			if id, ok := ks.byKey[w]; !ok || id.Name == "" {
				t.Fatalf("a listed key has no identity")
			}
		}
	})
}
