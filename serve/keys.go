package serve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/internal/fsutil"
)

// Identity is who an authorised key belongs to and what it may do.
type Identity struct {
	// Name is the display name shown to other operators and journaled
	// with every command.
	Name string
	// Role is viewer, operator or owner (viewer when the key names none).
	Role engine.Role
	// Fingerprint is the key's SHA256 fingerprint ("SHA256:...").
	Fingerprint string
}

// Keys is a parsed authorized-keys file: the keys allowed in and the
// identity of each. It is immutable once loaded.
type Keys struct {
	byKey map[string]Identity // keyed by the key's wire encoding
	order []string
}

// Environment names recognised in the options field of an authorized key.
const (
	EnvRole = "FLIGHTDECK_ROLE"
	EnvName = "FLIGHTDECK_NAME"
)

// harmless lists the OpenSSH key options that restrict things the
// flightdeck server never offers anyway (forwarding, X11, rc files), so
// they may appear in a shared file. Any other option (from=, command=,
// expiry-time=...) is refused rather than silently ignored: an operator
// who wrote it expects it to be enforced.
var harmless = map[string]bool{
	"restrict": true, "no-port-forwarding": true, "no-agent-forwarding": true,
	"no-x11-forwarding": true, "no-user-rc": true,
}

// maxKeysFileBytes bounds an authorized-keys file (some 20,000 keys).
const maxKeysFileBytes = 16 << 20

// LoadKeys reads an authorized-keys file (see ParseKeys for the syntax).
func LoadKeys(path string) (*Keys, error) {
	b, err := fsutil.ReadFileLimit(path, maxKeysFileBytes)
	if err != nil {
		return nil, fmt.Errorf("read authorized keys: %w", err)
	}
	k, err := ParseKeys(path, b)
	if err != nil {
		return nil, err
	}
	if len(k.order) == 0 {
		return nil, fmt.Errorf("%s: no keys: nobody could connect", path)
	}
	return k, nil
}

// ParseKeys parses an authorized-keys file in OpenSSH's format, one key
// per line; blank lines and lines starting with # are ignored. Each key
// carries a role and a display name, either in the options field
//
//	environment="FLIGHTDECK_ROLE=operator",environment="FLIGHTDECK_NAME=alice" ssh-ed25519 AAAA... alice@laptop
//
// or in the comment, as role= and name= words
//
//	ssh-ed25519 AAAA... alice@laptop role=operator name=alice
//
// The options win over the comment. Without a name, the name is the
// comment's first word up to any "@" (alice@laptop → alice), else the
// key's short fingerprint. A key without a role is a viewer. Errors name
// file:line.
func ParseKeys(file string, data []byte) (*Keys, error) {
	k := &Keys{byKey: map[string]Identity{}}
	names := map[string]int{} // folded name → line
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, wire, err := parseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, n, err))
			continue
		}
		if prev, dup := k.byKey[wire]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: key %s is listed twice (already for %s)", file, n, id.Fingerprint, prev.Name))
			continue
		}
		// Two keys under one name could not be told apart in the presence
		// list, the journal's actor or revisions.log: one could pass for
		// the other.
		folded := strings.ToLower(id.Name)
		if at, dup := names[folded]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: name %q is already used on line %d: give each key its own name (name=%s-laptop)", file, n, id.Name, at, id.Name))
			continue
		}
		names[folded] = n
		k.byKey[wire] = id
		k.order = append(k.order, wire)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", file, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return k, nil
}

func parseLine(line string) (Identity, string, error) {
	pub, comment, options, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Identity{}, "", fmt.Errorf("not an authorized key: %w", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return Identity{}, "", errors.New("more than one key on a line")
	}
	if _, ok := pub.(*gossh.Certificate); ok {
		return Identity{}, "", errors.New("certificates are not supported; list the plain public key")
	}
	id := Identity{Fingerprint: gossh.FingerprintSHA256(pub)}
	var role, name string
	for _, o := range options {
		key, val, hasVal := strings.Cut(o, "=")
		switch {
		case strings.EqualFold(key, "environment") && hasVal:
			v, err := unquote(val)
			if err != nil {
				return Identity{}, "", fmt.Errorf("option %s: %w", o, err)
			}
			ek, ev, _ := strings.Cut(v, "=")
			switch ek {
			case EnvRole:
				role = ev
			case EnvName:
				name = ev
			default:
				return Identity{}, "", fmt.Errorf("option %s: only %s and %s are understood", o, EnvRole, EnvName)
			}
		case !hasVal && harmless[strings.ToLower(key)]:
		default:
			return Identity{}, "", fmt.Errorf("option %q is not supported by flightdeck serve (it would not be enforced)", o)
		}
	}
	words := strings.Fields(comment)
	first := ""
	for _, w := range words {
		switch {
		case strings.HasPrefix(w, "role="):
			if role == "" {
				role = strings.TrimPrefix(w, "role=")
			}
		case strings.HasPrefix(w, "name="):
			if name == "" {
				name = strings.TrimPrefix(w, "name=")
			}
		case first == "":
			first = w
		}
	}
	if name == "" && first != "" {
		name, _, _ = strings.Cut(first, "@")
	}
	if name == "" {
		name = "key-" + strings.TrimPrefix(id.Fingerprint, "SHA256:")[:8]
	}
	if err := validName(name); err != nil {
		return Identity{}, "", err
	}
	id.Name = name
	id.Role = engine.RoleViewer
	if role != "" {
		r, err := engine.ParseRole(role)
		if err != nil {
			return Identity{}, "", err
		}
		id.Role = r
	}
	return id, string(pub.Marshal()), nil
}

// validName keeps names printable and short: they are drawn in every
// operator's header and written to the journal. Valid UTF-8 of visible
// characters only: no C0 or C1 controls, no bidirectional overrides or
// other invisible format characters (which can make one name look like
// another or reorder what follows it on screen), no spaces or quotes.
func validName(s string) error {
	if len(s) > 32 {
		return fmt.Errorf("name %q is longer than 32 bytes", s)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("name %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return fmt.Errorf("name %q: use letters, digits and punctuation without spaces, quotes, control or invisible characters (%U)", s, r)
		}
	}
	return nil
}

func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("value must be double-quoted")
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), nil
}

// Lookup returns the identity of a public key, if it is authorised.
func (k *Keys) Lookup(pub gossh.PublicKey) (Identity, bool) {
	if k == nil || pub == nil {
		return Identity{}, false
	}
	id, ok := k.byKey[string(pub.Marshal())]
	return id, ok
}

// Len is the number of authorised keys.
func (k *Keys) Len() int { return len(k.order) }

// Identities lists the identities in file order.
func (k *Keys) Identities() []Identity {
	out := make([]Identity, 0, len(k.order))
	for _, w := range k.order {
		out = append(out, k.byKey[w])
	}
	return out
}
