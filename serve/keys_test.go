package serve

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
)

func newPub(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func authLine(p gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p)))
}

func TestParseKeys(t *testing.T) {
	k := newPub(t)
	fp := gossh.FingerprintSHA256(k)
	tests := []struct {
		name, line string
		want       Identity
		err        string
	}{
		{name: "options", line: `environment="FLIGHTDECK_ROLE=operator",environment="FLIGHTDECK_NAME=alice" ` + authLine(k) + " someone@laptop",
			want: Identity{Name: "alice", Role: engine.RoleOperator}},
		{name: "comment words", line: authLine(k) + " bob@desk role=owner", want: Identity{Name: "bob", Role: engine.RoleOwner}},
		{name: "comment name wins over first word", line: authLine(k) + " x@y name=carol role=operator", want: Identity{Name: "carol", Role: engine.RoleOperator}},
		{name: "options win over comment", line: `environment="FLIGHTDECK_ROLE=viewer" ` + authLine(k) + " dan role=owner", want: Identity{Name: "dan", Role: engine.RoleViewer}},
		{name: "no role is a viewer", line: authLine(k) + " erin@host", want: Identity{Name: "erin", Role: engine.RoleViewer}},
		{name: "no comment", line: authLine(k), want: Identity{Name: "key-" + strings.TrimPrefix(fp, "SHA256:")[:8], Role: engine.RoleViewer}},
		{name: "harmless option", line: "restrict,no-port-forwarding " + authLine(k) + " fay role=operator", want: Identity{Name: "fay", Role: engine.RoleOperator}},
		{name: "unknown role", line: authLine(k) + " gus role=admin", err: `unknown role "admin"`},
		{name: "from= not enforced so refused", line: `from="10.0.0.1" ` + authLine(k) + " hal", err: "not supported"},
		{name: "other environment", line: `environment="PATH=/x" ` + authLine(k) + " ida", err: "only FLIGHTDECK_ROLE and FLIGHTDECK_NAME"},
		{name: "garbage", line: "ssh-ed25519 notbase64 jo", err: "not an authorized key"},
		{name: "name with quote", line: authLine(k) + ` name=a"b`, err: "use letters"},
		{name: "non-ASCII letters are fine", line: authLine(k) + " name=José role=operator", want: Identity{Name: "José", Role: engine.RoleOperator}},
		{name: "C1 control", line: `environment="FLIGHTDECK_NAME=al` + "\u009b" + `2Jice" ` + authLine(k), err: "control or invisible"},
		{name: "NEL (C1)", line: `environment="FLIGHTDECK_NAME=al` + "\u0085" + `ice" ` + authLine(k), err: "control or invisible"},
		{name: "bidi override", line: `environment="FLIGHTDECK_NAME=` + "\u202e" + `ecila" ` + authLine(k), err: "control or invisible"},
		{name: "bidi isolate", line: authLine(k) + " name=a" + "\u2066" + "b", err: "control or invisible"},
		{name: "zero-width space", line: authLine(k) + " name=ali" + "\u200b" + "ce", err: "control or invisible"},
		{name: "no-break space", line: `environment="FLIGHTDECK_NAME=al` + "\u00a0" + `ice" ` + authLine(k), err: "control or invisible"},
		{name: "escape in option", line: `environment="FLIGHTDECK_NAME=al` + "\x1b" + `]0;x" ` + authLine(k), err: "control or invisible"},
		{name: "invalid UTF-8", line: authLine(k) + " name=al\xffice", err: "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := ParseKeys("ak", []byte("# comment\n\n"+tc.line+"\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "ak:3:") {
					t.Fatalf("err = %v, want ak:3: ...%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, ok := ks.Lookup(k)
			tc.want.Fingerprint = fp
			if !ok || id != tc.want {
				t.Fatalf("Lookup = %+v %v, want %+v", id, ok, tc.want)
			}
			if _, ok := ks.Lookup(newPub(t)); ok {
				t.Fatal("an unlisted key was found")
			}
		})
	}
}

func TestParseKeysDuplicate(t *testing.T) {
	k := newPub(t)
	_, err := ParseKeys("ak", []byte(authLine(k)+" a role=owner\n"+authLine(k)+" b\n"))
	if err == nil || !strings.Contains(err.Error(), "ak:2: key") || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestParseKeysDuplicateName(t *testing.T) {
	a, b := newPub(t), newPub(t)
	_, err := ParseKeys("ak", []byte("# team\n"+authLine(a)+" alice@laptop role=owner\n"+authLine(b)+" name=Alice role=viewer\n"))
	if err == nil || !strings.Contains(err.Error(), `ak:3: name "Alice" is already used on line 2`) {
		t.Fatalf("duplicate name: %v", err)
	}
}
