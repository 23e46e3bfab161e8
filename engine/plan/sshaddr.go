package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SplitSSHAddress splits an SSH address "[user@]host[:port]" (IPv6 in
// brackets when a port follows, or bare). The port is 0 when none is
// written. It is the one syntax check of an address: the plan's
// validation (check, and every command that loads a plan) and the SSH
// resolver (deploy) both use it.
func SplitSSHAddress(s string) (user, host string, port int, err error) {
	hostPart := s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, hostPart = s[:i], s[i+1:]
		if user == "" {
			return "", "", 0, fmt.Errorf("address %q: empty user before '@'", s)
		}
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' }) {
		return "", "", 0, fmt.Errorf("address %q: spaces, commas and control characters are not allowed", s)
	}
	host, port, err = splitHostPort(hostPart)
	if err == nil && strings.ContainsAny(host, "[]/\\") {
		return "", "", 0, fmt.Errorf("address %q: host %q holds '[', ']', '/' or '\\' (an IPv6 address with a port is written [addr]:port)", s, host)
	}
	return user, host, port, err
}

// SplitJumpList splits a comma-separated list of jump hosts and checks
// each address.
func SplitJumpList(list string) ([]string, error) {
	var out []string
	for _, hop := range strings.Split(list, ",") {
		hop = strings.TrimSpace(hop)
		if hop == "" {
			return nil, fmt.Errorf("jump list %q has an empty hop", list)
		}
		if _, _, _, err := SplitSSHAddress(hop); err != nil {
			return nil, fmt.Errorf("jump host %s: %w", hop, err)
		}
		out = append(out, hop)
	}
	return out, nil
}

func splitHostPort(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty address")
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("address %q: missing ']'", s)
		}
		host, rest := s[1:end], s[end+1:]
		if host == "" {
			return "", 0, fmt.Errorf("address %q: empty host", s)
		}
		if rest == "" {
			return host, 0, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", 0, fmt.Errorf("address %q: expected ':port' after ']'", s)
		}
		p, err := parsePort(rest[1:])
		return host, p, err
	}
	if strings.Count(s, ":") > 1 {
		return s, 0, nil // bare IPv6 address
	}
	host, ps, found := strings.Cut(s, ":")
	if host == "" {
		return "", 0, fmt.Errorf("address %q: empty host", s)
	}
	if !found {
		return host, 0, nil
	}
	p, err := parsePort(ps)
	return host, p, err
}

// ParsePort reads a TCP port number, 1-65535.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 65535 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	return n, nil
}
