package plan

import (
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const durationHint = `expected a duration like "30s" or "1m30s"`

func (x *Duration) decodeNode(d *decoder, n *yaml.Node, _ string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s, got %s", durationHint, describe(n))
		return
	}
	if _, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err == nil || n.Tag == "!!int" || n.Tag == "!!float" {
		d.errorf(n, "%s, got the bare number %s: add a unit, e.g. \"%ss\" or \"%sms\"", durationHint, n.Value, n.Value, n.Value)
		return
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		d.errorf(n, "%s (units: ms, s, m, h), got %s", durationHint, describe(n))
		return
	}
	if v < 0 {
		d.errorf(n, "a duration cannot be negative, got %s", describe(n))
		return
	}
	x.Duration = v
}

// String formats the duration as Go does ("1m30s", "0s").
func (x Duration) String() string { return x.Duration.String() }

// MarshalYAML writes the duration in the form it is read.
func (x Duration) MarshalYAML() (any, error) { return x.String(), nil }

const sizeHint = `expected a number of hosts like 2 or a percentage like "25%"`

func (s *Size) decodeNode(d *decoder, n *yaml.Node, _ string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s, got %s", sizeHint, describe(n))
		return
	}
	if n.Tag == "!!int" {
		v, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v < 1 || v > math.MaxInt32 {
			d.errorf(n, "%s, at least 1, got %s", sizeHint, describe(n))
			return
		}
		*s = Size{N: int(v), Set: true}
		return
	}
	num, ok := strings.CutSuffix(strings.TrimSpace(n.Value), "%")
	if !ok {
		d.errorf(n, "%s, got %s", sizeHint, describe(n))
		return
	}
	p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
		d.errorf(n, "%s: a percentage must be more than 0%% and at most 100%%, got %s", sizeHint, describe(n))
		return
	}
	*s = Size{Percent: p, Set: true}
}

// Of returns how many of n hosts the size stands for: a count is capped at
// n, a percentage rounds up; the result is at least 1 (when n > 0) and at
// most n. An unset Size stands for one host.
func (s Size) Of(n int) int {
	if n <= 0 {
		return 0
	}
	c := 1
	switch {
	case s.Set && s.Percent > 0:
		// Round away float noise first, so that 25% of 8 is 2, not 3.
		exact := math.Round(float64(n)*s.Percent/100*1e9) / 1e9
		c = int(math.Ceil(exact))
	case s.Set && s.N > 0:
		c = s.N
	}
	return max(1, min(c, n))
}

// String formats the size as written: "2" or "25%".
func (s Size) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.N)
}

// MarshalYAML writes the size in the form it is read.
func (s Size) MarshalYAML() (any, error) {
	if !s.Set {
		return nil, nil
	}
	if s.Percent > 0 {
		return s.String(), nil
	}
	return s.N, nil
}

const percentHint = `expected a percentage like "0.1%" or 1`

func (x *Percent) decodeNode(d *decoder, n *yaml.Node, _ string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s, got %s", percentHint, describe(n))
		return
	}
	text := strings.TrimSpace(n.Value)
	num, hasSign := strings.CutSuffix(text, "%")
	if !hasSign && n.Tag != "!!int" && n.Tag != "!!float" {
		d.errorf(n, "%s, got %s", percentHint, describe(n))
		return
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.errorf(n, "%s, got %s", percentHint, describe(n))
		return
	}
	if v < 0 || v > 100 {
		d.errorf(n, "a percentage must be between 0%% and 100%%, got %s", describe(n))
		return
	}
	*x = Percent{Value: v, Set: true}
}

// Fraction returns the percentage as a fraction: 0.1 % is 0.001.
func (x Percent) Fraction() float64 { return x.Value / 100 }

// String formats the percentage as "0.1%".
func (x Percent) String() string { return strconv.FormatFloat(x.Value, 'f', -1, 64) + "%" }

// MarshalYAML writes the percentage in the form it is read.
func (x Percent) MarshalYAML() (any, error) {
	if !x.Set {
		return nil, nil
	}
	return x.String(), nil
}

func (s *Source) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		s.Dir = n.Value
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a directory (source: ./build) or {dir: PATH} or {git: {repo: URL, ref: main}}, got %s", describe(n))
		return
	}
	d.decodeStruct(n, structOf(s), path, 0)
}

func (h *Hook) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		h.Run = n.Value
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a command (- ./migrate.sh) or {run: COMMAND, timeout: 5m, local: true}, got %s", describe(n))
		return
	}
	d.decodeStruct(n, structOf(h), path, 0)
}

func (h *Host) setPos(line, col int) { h.Line, h.Column = line, col }

func (e *Environment) setName(name string) { e.Name = name }
