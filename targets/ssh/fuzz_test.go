package ssh

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
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

// FuzzParseTree: any output never panics, and a listing it accepts holds
// each path once, in path order, each found by Lookup as listed; two
// entries as find prints them read back as printed.
func FuzzParseTree(f *testing.F) {
	f.Add("b/c", "a", "S f 644 1 2 3 1.000000000\x00\x00x\x00")
	f.Add("line\nbreak", "x y", "R l 777 5 1 2 1.000000001\x00a b\nc\x00x\x00R d 2755 40 1 3 2.000000000\x00\x00d\x00")
	f.Add("n", "n", "R f 644 1 2 3 1.000000000\x00\x00n\x00S d 755 1 2 4 1.000000000\x00\x00n\x00")
	f.Fuzz(func(t *testing.T, n1, n2, raw string) {
		if tree, err := parseTree([]byte(raw)); err == nil {
			var last string
			n := 0
			for p, e := range tree.All() {
				if n > 0 && p <= last {
					t.Fatalf("%q after %q", p, last)
				}
				if got, ok := tree.Lookup(p); !ok || got != e {
					t.Fatalf("Lookup(%q) = %+v, %v; listed %+v", p, got, ok, e)
				}
				last = p
				n++
			}
			if n != tree.Len() {
				t.Fatalf("%d entries yielded, Len %d", n, tree.Len())
			}
		}
		if n1 == "" || n2 == "" || n1 == n2 || strings.ContainsRune(n1+n2, 0) {
			return
		}
		out := "S f 444 12 2049 7 1765000000.1234567890\x00\x00" + n1 + "\x00R l 777 3 2049 8 1765000001.0000000000\x00" + n2 + "\x00" + n2 + "\x00"
		tree, err := parseTree([]byte(out))
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		e1, ok1 := tree.Lookup(n1)
		e2, ok2 := tree.Lookup(n2)
		if tree.Len() != 2 || !ok1 || !ok2 || e1.Mode() != 0o444 || e1.Stamp.Ino != 7 || e1.Stamp.MTime != 1765000000123456789 || e1.Recent ||
			e2.Link != n2 || e2.Mode() != fs.ModeSymlink|0o777 || !e2.Recent {
			t.Fatalf("%q read as %+v, %+v", out, e1, e2)
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
