package plan

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits that keep a hostile or broken file from exhausting the machine: YAML
// aliases can make a small file describe a huge (or cyclic) tree.
const (
	maxDepth = 64
	maxNodes = 1 << 18 // a plan of 10,000 hosts is about 100,000 nodes
)

// decoder walks a yaml.Node tree into the plan structs by reflection over
// their `yaml:"..."` tags, collecting every problem with its position and
// remembering where each key was written, for validation.
type decoder struct {
	file string
	errs Errors
	root *yaml.Node
	// keys and vals hold, by path (see child), the key node and the
	// non-null value node of every key decoded.
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
	// order holds the key order of decoded maps, by path.
	order  map[string][]string
	nodes  int
	tooBig bool
}

// nodeDecoder is implemented by the plan types with a YAML form of their own
// (a duration, a size, a source given as a plain string...).
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

// positioned is implemented by types that remember where they were written.
type positioned interface{ setPos(line, col int) }

// named is implemented by map values that carry their own key.
type named interface{ setName(string) }

func newDecoder(file string) *decoder {
	return &decoder{
		file:  file,
		keys:  map[string]*yaml.Node{},
		vals:  map[string]*yaml.Node{},
		order: map[string][]string{},
	}
}

// pathSep separates the parts of a path; it cannot appear in a YAML key
// written by hand, so environment names with dots stay unambiguous.
const pathSep = "\x00"

// child returns the path of a key or list index under parent.
func child(parent string, parts ...any) string {
	for _, p := range parts {
		var s string
		switch p := p.(type) {
		case string:
			s = p
		case int:
			s = strconv.Itoa(p)
		default:
			s = fmt.Sprint(p)
		}
		if parent == "" {
			parent = s
		} else {
			parent += pathSep + s
		}
	}
	return parent
}

// lastPart returns the last part of a path.
func lastPart(path string) string {
	if i := strings.LastIndex(path, pathSep); i >= 0 {
		return path[i+len(pathSep):]
	}
	return path
}

// errorf records a problem at node n (the start of the file if n is nil).
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line = n.Line
		if n.Column > 0 {
			col = n.Column
		}
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases and documents down to the node holding a value.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode); i++ {
		if i > maxDepth {
			d.errorf(n, "aliases nest too deeply")
			return nil
		}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
			continue
		}
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	return n
}

// count charges one node against the budget and reports whether the walk
// may go on.
func (d *decoder) count(n *yaml.Node) bool {
	d.nodes++
	if d.nodes > maxNodes {
		if !d.tooBig {
			d.tooBig = true
			d.errorf(n, "the plan is too large once its aliases (*name) are expanded; simplify it")
		}
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe says what a node is, in words an operator knows.
func describe(n *yaml.Node) string {
	switch {
	case n == nil || isNull(n):
		return "nothing"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return `a set of "key: value" lines`
	}
	v := n.Value
	if r := []rune(v); len(r) > 40 {
		v = string(r[:40]) + "…"
	}
	switch n.Tag {
	case "!!int", "!!float", "!!bool":
		return v
	}
	return strconv.Quote(v)
}

// decode stores the value of node n into v.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) {
	if depth > maxDepth {
		d.errorf(n, "the plan nests too deeply")
		return
	}
	n = d.resolve(n)
	if isNull(n) || !d.count(n) {
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, depth+1)
		return
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			nd.decodeNode(d, n, path)
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path, depth)
	case reflect.String:
		if s, ok := d.scalar(n, "text"); ok {
			v.SetString(s)
		}
	case reflect.Int:
		if i, ok := d.int(n); ok {
			v.SetInt(int64(i))
		}
	case reflect.Bool:
		if b, ok := d.bool(n); ok {
			v.SetBool(b)
		}
	case reflect.Slice:
		d.decodeSlice(n, v, path, depth)
	case reflect.Map:
		d.decodeMap(n, v, path, depth)
	default:
		// Only reachable if a field of an unsupported kind is added to the schema.
		d.errorf(n, "internal error: no decoder for %s", path)
	}
}

// scalar returns the text of a scalar node, or records that `what` was expected.
func (d *decoder) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "expected %s, got %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) int(n *yaml.Node) (int, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err == nil {
			return int(i), true
		}
		d.errorf(n, "the number %s is too large", n.Value)
		return 0, false
	}
	d.errorf(n, "expected a whole number, got %s", describe(n))
	return 0, false
}

func (d *decoder) bool(n *yaml.Node) (bool, bool) {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			return true, true
		case "false", "no", "off":
			return false, true
		}
	}
	d.errorf(n, "expected true or false, got %s", describe(n))
	return false, false
}

// field is one YAML key of a struct.
type field struct {
	name  string
	index int
}

func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "-" || tag == "" {
			continue
		}
		fs = append(fs, field{name: tag, index: i})
	}
	return fs
}

// decodeStruct decodes a mapping into the fields of struct v.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) {
	what := nounOf(v.Type())
	if v.Type() == reflect.TypeFor[Environment]() {
		what.in = fmt.Sprintf("in environment %q", lastPart(path))
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected %s (a set of \"key: value\" lines), got %s", what.article, describe(n))
		return
	}
	if p, ok := v.Addr().Interface().(positioned); ok {
		p.setPos(n.Line, n.Column)
	}
	fs := fieldsOf(v.Type())
	for _, kv := range d.pairs(n, 0) {
		var f *field
		for i := range fs {
			if fs[i].name == kv.key.Value {
				f = &fs[i]
				break
			}
		}
		if f == nil {
			names := make([]string, len(fs))
			for i, f := range fs {
				names[i] = f.name
			}
			d.unknown(kv.key, "key", what.in, names)
			continue
		}
		p := child(path, f.name)
		d.keys[p] = kv.key
		if val := d.resolve(kv.val); !isNull(val) {
			d.vals[p] = val
		}
		d.decode(kv.val, v.Field(f.index), p, depth+1)
	}
}

// unknown reports a word that is not one of known, with the closest known
// word as a suggestion, or the whole list when none is close.
func (d *decoder) unknown(n *yaml.Node, kind, where string, known []string) {
	msg := fmt.Sprintf("unknown %s %q", kind, n.Value)
	if where != "" {
		msg += " " + where
	}
	if s := suggest(n.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (expected one of: " + strings.Join(known, ", ") + ")"
	}
	d.errorf(n, "%s", msg)
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, depth int) {
	items := n.Content
	if n.Kind == yaml.ScalarNode {
		// A single value stands for a list of one: `build: make`.
		items = []*yaml.Node{n}
	} else if n.Kind != yaml.SequenceNode {
		d.errorf(n, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		p := child(path, i)
		if r := d.resolve(item); !isNull(r) {
			d.vals[p] = r
		}
		d.decode(item, s.Index(i), p, depth+1)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a set of \"name: value\" lines, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	et := v.Type().Elem()
	for _, kv := range d.pairs(n, 0) {
		name := kv.key.Value
		p := child(path, name)
		d.keys[p] = kv.key
		d.order[path] = append(d.order[path], name)
		ev := reflect.New(et).Elem()
		if et.Kind() == reflect.Pointer {
			// An entry with nothing under it still exists: `staging:`.
			ev.Set(reflect.New(et.Elem()))
			if nm, ok := ev.Interface().(named); ok {
				nm.setName(name)
			}
		}
		if val := d.resolve(kv.val); !isNull(val) {
			d.vals[p] = val
		}
		d.decode(kv.val, ev, p, depth+1)
		v.SetMapIndex(reflect.ValueOf(name), ev)
	}
}

// pair is one key and its value in a mapping.
type pair struct{ key, val *yaml.Node }

// pairs returns the entries of mapping n with merge keys (<<: *base)
// expanded: keys written in n win over merged ones, and earlier merged
// mappings win over later ones. Keys written twice are reported.
func (d *decoder) pairs(n *yaml.Node, depth int) []pair {
	if depth > maxDepth {
		d.errorf(n, "merges (<<) nest too deeply")
		return nil
	}
	seen := map[string]*yaml.Node{}
	var out, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			k = d.resolve(k)
			if k == nil {
				continue
			}
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.merge(v, depth)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "expected a key name, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "key %q is written twice (first on line %d); keep one", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, v})
	}
	for _, kv := range merged {
		if _, ok := seen[kv.key.Value]; ok {
			continue
		}
		seen[kv.key.Value] = kv.key
		out = append(out, kv)
	}
	return out
}

// merge returns the entries a merge key brings in: from a mapping or a list
// of mappings.
func (d *decoder) merge(v *yaml.Node, depth int) []pair {
	v = d.resolve(v)
	switch {
	case v == nil:
		return nil
	case v.Kind == yaml.MappingNode:
		return d.pairs(v, depth+1)
	case v.Kind == yaml.SequenceNode:
		var out []pair
		for _, item := range v.Content {
			item = d.resolve(item)
			if item == nil || item.Kind != yaml.MappingNode {
				d.errorf(v, "a merge (<<) takes a mapping or a list of mappings, got %s in the list", describe(item))
				continue
			}
			out = append(out, d.pairs(item, depth+1)...)
		}
		return out
	}
	d.errorf(v, "a merge (<<) takes a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// noun names a section of the plan for messages.
type noun struct {
	article string // "a strategy"
	in      string // "in strategy"
}

func nounOf(t reflect.Type) noun {
	switch t {
	case reflect.TypeFor[Plan]():
		return noun{"a release plan", "at the top level"}
	case reflect.TypeFor[Source]():
		return noun{"a source", "in source"}
	case reflect.TypeFor[GitSource]():
		return noun{"a git source", "in source.git"}
	case reflect.TypeFor[Health]():
		return noun{"a health check", "in health"}
	case reflect.TypeFor[Hooks]():
		return noun{"hooks", "in hooks"}
	case reflect.TypeFor[Hook]():
		return noun{"a hook", "in hook"}
	case reflect.TypeFor[Environment]():
		return noun{"an environment", "in environment"}
	case reflect.TypeFor[Host]():
		return noun{"a host", "in host"}
	case reflect.TypeFor[Strategy]():
		return noun{"a strategy", "in strategy"}
	case reflect.TypeFor[Cohort]():
		return noun{"a cohort", "in strategy.cohort"}
	case reflect.TypeFor[SSHConfig]():
		return noun{"ssh settings", "in ssh"}
	case reflect.TypeFor[RouterConfig]():
		return noun{"router settings", "in router"}
	case reflect.TypeFor[Gate]():
		return noun{"a gate", "in gate"}
	case reflect.TypeFor[Prometheus]():
		return noun{"prometheus settings", "in gate.prometheus"}
	case reflect.TypeFor[AutoRollback]():
		return noun{"auto_rollback settings", "in auto_rollback"}
	case reflect.TypeFor[Probe]():
		return noun{"a probe", "in probe"}
	}
	return noun{"a set of settings", ""}
}

// structOf returns the addressable struct a pointer points to.
func structOf(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
