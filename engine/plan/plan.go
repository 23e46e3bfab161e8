package plan

import (
	"bytes"
	"errors"
	"flightdeck/internal/fsutil"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// DefaultFile is the plan file name looked for when none is given.
const DefaultFile = "flightdeck.yaml"

// MaxSize bounds a plan file (a plan of a thousand hosts is about 100 KiB):
// a larger or endless one (-f /dev/zero) is refused, not read.
const MaxSize = 4 << 20

// Load reads and validates the plan file at path. A bad plan gives an *Error
// or Errors, each naming path:line:column.
func Load(path string) (*Plan, error) {
	data, err := fsutil.ReadFileLimit(path, MaxSize)
	if errors.Is(err, fsutil.ErrTooLarge) {
		return nil, &Error{File: path, Line: 1, Column: 1, Msg: "the plan is " + strings.TrimPrefix(err.Error(), path+": ")}
	}
	if err != nil {
		return nil, fmt.Errorf("reading release plan: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a plan held in data; file names it in errors
// and sets Plan.File and Plan.Dir (relative paths in the plan are resolved
// against the directory of file). Every problem found is reported: one as an
// *Error, several as Errors sorted by position. Defaults are applied, so a
// returned plan has no unset tunables.
func Parse(file string, data []byte) (*Plan, error) {
	d := newDecoder(file)
	root := d.parseYAML(data)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted().err()
	}
	if root == nil {
		d.errorf(nil, "the plan is empty; it needs at least app, source and environments")
		return nil, d.errs.err()
	}
	d.root = root
	p := &Plan{File: file, Dir: filepath.Dir(file)}
	if abs, err := filepath.Abs(p.Dir); err == nil {
		p.Dir = abs
	}
	d.decode(root, reflect.ValueOf(p).Elem(), "", 0)
	if d.tooBig {
		return nil, d.errs.sorted().err()
	}
	p.EnvOrder = d.order["environments"]
	p.resolvePaths()
	d.validate(p)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted().err()
	}
	p.applyDefaults()
	return p, nil
}

// parseYAML reads the single YAML document of data, recording syntax errors.
func (d *decoder) parseYAML(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := safeDecode(dec, &extra); {
	case err == nil:
		d.errorf(&extra, "a plan file holds one YAML document; remove this second one (and the --- before it)")
	case !errors.Is(err, io.EOF):
		d.syntaxError(err, data)
	}
	root := d.resolve(&doc)
	if isNull(root) {
		return nil
	}
	return root
}

// safeDecode decodes one document; a panic inside the YAML library becomes
// an error rather than a crash of the cockpit.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the file could not be read as YAML (%v)", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML library error into a positioned Error. The
// library gives a line but no column; without a line, the first byte that
// cannot appear in YAML is located, or else 1:1 is used.
func (d *decoder) syntaxError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 0, 1
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		line, col = badByte(data)
	}
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 {
		line = 1
	}
	if line <= len(lines) && bytes.ContainsRune(lines[line-1], '\t') && strings.Contains(msg, "cannot start any token") {
		msg += " (YAML is indented with spaces, not tabs)"
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: "invalid YAML: " + msg})
}

// badByte locates the first invalid UTF-8 sequence or control character.
func badByte(data []byte) (line, col int) {
	line, col = 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 || r != '\t' && r != '\n' && r != '\r' && unicode.IsControl(r) {
			return line, col
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[size:]
	}
	return 1, 1
}

// Env returns the environment called name. An empty name is allowed when the
// plan has exactly one environment.
func (p *Plan) Env(name string) (*Environment, error) {
	names := p.envNames()
	if name == "" {
		if len(names) == 1 {
			return p.Environments[names[0]], nil
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s defines no environments", p.fileName())
		}
		return nil, fmt.Errorf("%s has %d environments; choose one of: %s", p.fileName(), len(names), strings.Join(names, ", "))
	}
	if e, ok := p.Environments[name]; ok && e != nil {
		return e, nil
	}
	msg := fmt.Sprintf("%s has no environment %q", p.fileName(), name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return nil, fmt.Errorf("%s; choose one of: %s", msg, strings.Join(names, ", "))
}

func (p *Plan) fileName() string {
	if p.File == "" {
		return "the release plan"
	}
	return p.File
}

// envNames returns the environment names in file order (sorted when the plan
// was built in code without EnvOrder).
func (p *Plan) envNames() []string {
	if len(p.EnvOrder) == len(p.Environments) {
		return slices.Clone(p.EnvOrder)
	}
	names := make([]string, 0, len(p.Environments))
	for n := range p.Environments {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// PromotionOrder returns the order a release goes through the environments:
// the promotion key when set, else the order they are written in the file.
func (p *Plan) PromotionOrder() []string {
	if len(p.Promotion) > 0 {
		return slices.Clone(p.Promotion)
	}
	return p.envNames()
}

// AutoPromote reports whether a canary moves to its next step by itself when
// the gate passes (the default), rather than waiting for an operator.
func (e *Environment) AutoPromote() bool {
	return e.Strategy.AutoPromote == nil || *e.Strategy.AutoPromote
}

// NeedsApproval reports whether action (e.g. "promote") waits for an operator.
func (e *Environment) NeedsApproval(action string) bool {
	return slices.Contains(e.RequireApproval, action)
}

// resolvePaths makes the file paths of the plan absolute, relative to the
// directory of the plan file. Paths starting with ~ are left for the user's
// home to be expanded by the code that opens them; remote paths (ssh hosts'
// deploy_to) are never touched.
func (p *Plan) resolvePaths() {
	abs := func(s *string) {
		if *s == "" || strings.HasPrefix(*s, "~") || filepath.IsAbs(*s) {
			return
		}
		*s = filepath.Join(p.Dir, *s)
	}
	if p.Source != nil {
		abs(&p.Source.Dir)
		if g := p.Source.Git; g != nil && isLocalRepo(g.Repo) {
			abs(&g.Repo)
		}
	}
	if st := p.State; st != nil && st.Etcd != nil {
		abs(&st.Etcd.PasswordFile)
		if t := st.Etcd.TLS; t != nil {
			abs(&t.CA)
			abs(&t.Cert)
			abs(&t.Key)
		}
	}
	for _, e := range p.Environments {
		if e == nil {
			continue
		}
		for _, h := range e.Hosts {
			if h != nil {
				abs(&h.Local)
			}
		}
		if e.SSH != nil {
			abs(&e.SSH.IdentityFile)
			abs(&e.SSH.KnownHosts)
		}
		if r := e.Router; r != nil {
			abs(&r.TokenFile)
			abs(&r.StateFile)
			abs(&r.UpstreamFile)
			abs(&r.MapFile)
			abs(&r.PIDFile)
			abs(&r.AccessLog)
			if r.Socket != "" && !strings.Contains(r.Socket, ":") {
				abs(&r.Socket) // a unix socket path; host:port is TCP
			}
		}
	}
}

// isLocalRepo reports whether a git repo is a path on this machine rather
// than a URL (scheme://...) or an scp-like address (user@host:path).
func isLocalRepo(repo string) bool {
	return !strings.Contains(repo, "://") && !strings.Contains(repo, ":")
}
