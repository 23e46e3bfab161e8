package ssh

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/kevinburke/ssh_config"

	"flightdeck/engine/plan"
)

// sha256sumLine formats one line as coreutils' sha256sum prints it: a
// name holding a backslash, newline or carriage return is escaped and the
// line starts with a backslash.
func sha256sumLine(hash, name string) string {
	if !strings.ContainsAny(name, "\\\n\r") {
		return hash + "  " + name + "\n"
	}
	r := strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r")
	return "\\" + hash + "  " + r.Replace(name) + "\n"
}

// FuzzParseSHA256Sum: sha256sum's output for any two names reads back as
// the same names and hashes; any output at all never panics, and every
// hash it accepts is 64 hex digits.
func FuzzParseSHA256Sum(f *testing.F) {
	f.Add("app.js", "line\nbreak.txt", []byte("x"))
	f.Add("back\\slash", "odd name's $(x) *.txt", []byte(""))
	f.Add("  leading", "cr\r\n", []byte("\\"+strings.Repeat("a", 64)+"  x\\"))
	f.Add("a", "b", []byte(strings.Repeat("a", 64)+" *star\n"+strings.Repeat("z", 64)+"  bad hex\n"))
	f.Fuzz(func(t *testing.T, n1, n2 string, raw []byte) {
		if got, err := parseSHA256Sum(raw); err == nil {
			for name, h := range got {
				if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
					t.Fatalf("accepted hash %q for %q from %q", h, name, raw)
				}
			}
		}
		if got, err := parseOpenSSLDigest(raw); err == nil {
			for name, h := range got {
				if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
					t.Fatalf("openssl: accepted hash %q for %q", h, name)
				}
			}
		}
		if n1 == "" || n2 == "" || n1 == n2 {
			return
		}
		h1, h2 := sha256.Sum256([]byte(n1)), sha256.Sum256([]byte(n2))
		want := map[string]string{n1: hex.EncodeToString(h1[:]), n2: hex.EncodeToString(h2[:])}
		out := sha256sumLine(want[n1], n1) + sha256sumLine(want[n2], n2)
		got, err := parseSHA256Sum([]byte(out))
		if err != nil || len(got) != 2 || got[n1] != want[n1] || got[n2] != want[n2] {
			t.Fatalf("sha256sum output %q read as %q, %v; want %q", out, got, err, want)
		}
	})
}

// FuzzSplitSSHAddress: any address either is refused or splits into a
// host and port that join and split back to the same.
func FuzzSplitSSHAddress(f *testing.F) {
	for _, s := range []string{"deploy@web-1", "web-1:2222", "u@[::1]:22", "::1", "[fe80::1%eth0]", "@x", "a@b@c:1", "x:99999", "x:+22", "x:0x16", "[::1]x", "", "u@:22", "a,b", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		user, host, port, err := plan.SplitSSHAddress(s)
		if err != nil {
			return
		}
		if host == "" || port < 0 || port > 65535 || strings.ContainsAny(s, " \n\t,") {
			t.Fatalf("%q accepted as user %q host %q port %d", s, user, host, port)
		}
		if port == 0 {
			port = 22
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		h2, p2, err := net.SplitHostPort(addr)
		if err != nil || h2 != host || p2 != strconv.Itoa(port) {
			t.Fatalf("%q: dial address %q does not split back (%q %q %v)", s, addr, h2, p2, err)
		}
	})
}

// FuzzResolve: any ssh config and any address resolve without panic or
// endless ProxyJump chains; a resolved target has a user, a dialable
// address, timeouts, key and known_hosts files, and at most maxJumpHops
// jumps.
func FuzzResolve(f *testing.F) {
	f.Add("Host web-*\n  User deploy\n  Port 2201\n  ProxyJump ops@bastion:2022\nHost bastion\n  HostName 10.0.0.1\n", "web-1")
	f.Add("Host loop-a\n  ProxyJump loop-b\nHost loop-b\n  ProxyJump loop-a\n", "loop-a")
	f.Add("Host x\n  HostName %h.example\n  Port 0\n", "x")
	f.Add("Host *\n  ProxyJump a,b,c,d,e,f,g,h,i,j\n", "deploy@z:22")
	f.Add("Host a\n  HostName [::1]\n  ConnectTimeout -5\n  UserKnownHostsFile ~/k1 ~/k2\n", "a")
	f.Fuzz(func(t *testing.T, config, addr string) {
		cfg, err := ssh_config.Decode(bytes.NewReader([]byte(config)))
		if err != nil {
			return
		}
		r := &Resolver{cfg: cfg, opts: ResolveOptions{Home: "/home/me", ConfigFile: "none", DefaultUser: "me", Getenv: func(string) string { return "" }}}
		tg, err := r.Resolve(&plan.Host{Name: "h", SSH: addr}, &plan.Environment{DeployTo: "/srv/app"})
		if err != nil {
			return
		}
		hops := 0
		for j := &tg; j != nil; j = j.Jump {
			if j.User == "" || j.ConnectTimeout <= 0 || j.CommandTimeout <= 0 || len(j.KnownHosts) == 0 || len(j.IdentityFiles) == 0 {
				t.Fatalf("%q with config %q: incomplete target %+v", addr, config, *j)
			}
			h, p, err := net.SplitHostPort(j.Addr)
			n, perr := strconv.Atoi(p)
			if err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
				t.Fatalf("%q with config %q: bad dial address %q", addr, config, j.Addr)
			}
			if hops++; hops > maxJumpHops+1 {
				t.Fatalf("%q with config %q: %d hops", addr, config, hops)
			}
		}
		_ = fmt.Sprint(tg.Key())
	})
}
