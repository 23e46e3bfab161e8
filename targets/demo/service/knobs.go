package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// KnobsFile is the name of the fault-knob file inside a release directory.
const KnobsFile = "knobs.json"

// DefaultFlapPeriod is the flap period used when Flap is set without FlapPeriod.
const DefaultFlapPeriod = time.Second

// Knobs are the fault knobs of a demo release, read from
// <release dir>/knobs.json when the service starts. The zero value is a
// healthy release. In JSON, durations are strings such as "150ms" or "5s":
//
//	{"error_rate": 0.05, "latency": "150ms", "startup_delay": "2s"}
type Knobs struct {
	// ErrorRate is the fraction (0–1) of "/" requests answered 500. The
	// failures are spread evenly by a request counter, so any run of n
	// requests holds within one of n*ErrorRate failures.
	ErrorRate float64
	// Latency is added to every "/" request.
	Latency time.Duration
	// LatencyJitter adds a uniformly random extra delay in [0, LatencyJitter).
	LatencyJitter time.Duration
	// StartupDelay is how long /healthz answers 503 after the start.
	StartupDelay time.Duration
	// CrashAfter, when set, ends the service abruptly this long after the
	// start: connections are cut and Run returns ErrCrash.
	CrashAfter time.Duration
	// Flap makes ErrorRate apply only in alternating periods of FlapPeriod
	// after the service became ready: the first period fails, the next is
	// healthy, and so on.
	Flap       bool
	FlapPeriod time.Duration
}

// knobsJSON is the on-disk form of Knobs.
type knobsJSON struct {
	ErrorRate     float64 `json:"error_rate,omitempty"`
	Latency       string  `json:"latency,omitempty"`
	LatencyJitter string  `json:"latency_jitter,omitempty"`
	StartupDelay  string  `json:"startup_delay,omitempty"`
	CrashAfter    string  `json:"crash_after,omitempty"`
	Flap          bool    `json:"flap,omitempty"`
	FlapPeriod    string  `json:"flap_period,omitempty"`
}

func formatDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// MarshalJSON writes the knobs with durations as strings, omitting zero knobs.
func (k Knobs) MarshalJSON() ([]byte, error) {
	return json.Marshal(knobsJSON{
		ErrorRate:     k.ErrorRate,
		Latency:       formatDuration(k.Latency),
		LatencyJitter: formatDuration(k.LatencyJitter),
		StartupDelay:  formatDuration(k.StartupDelay),
		CrashAfter:    formatDuration(k.CrashAfter),
		Flap:          k.Flap,
		FlapPeriod:    formatDuration(k.FlapPeriod),
	})
}

// UnmarshalJSON reads knobs strictly: an unknown knob or a malformed
// duration is an error. It does not validate ranges; see
// Validate.
func (k *Knobs) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w knobsJSON
	if err := dec.Decode(&w); err != nil {
		return err
	}
	var out Knobs
	out.ErrorRate = w.ErrorRate
	out.Flap = w.Flap
	for _, f := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"latency", w.Latency, &out.Latency},
		{"latency_jitter", w.LatencyJitter, &out.LatencyJitter},
		{"startup_delay", w.StartupDelay, &out.StartupDelay},
		{"crash_after", w.CrashAfter, &out.CrashAfter},
		{"flap_period", w.FlapPeriod, &out.FlapPeriod},
	} {
		if f.in == "" {
			continue
		}
		d, err := time.ParseDuration(f.in)
		if err != nil {
			return fmt.Errorf("knob %q: %w", f.name, err)
		}
		*f.out = d
	}
	*k = out
	return nil
}

// Validate reports knobs that make no sense: an error rate outside 0–1,
// negative durations, a flap period without flap, or flap without errors.
func (k Knobs) Validate() error {
	var errs []error
	if k.ErrorRate < 0 || k.ErrorRate > 1 || k.ErrorRate != k.ErrorRate {
		errs = append(errs, fmt.Errorf("knob \"error_rate\": %v is not a fraction between 0 and 1", k.ErrorRate))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"latency", k.Latency},
		{"latency_jitter", k.LatencyJitter},
		{"startup_delay", k.StartupDelay},
		{"crash_after", k.CrashAfter},
		{"flap_period", k.FlapPeriod},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("knob %q: %v is negative", d.name, d.v))
		}
	}
	if k.FlapPeriod != 0 && !k.Flap {
		errs = append(errs, errors.New("knob \"flap_period\" is set but \"flap\" is not"))
	}
	if k.Flap && k.ErrorRate == 0 {
		errs = append(errs, errors.New("knob \"flap\" needs \"error_rate\" above 0"))
	}
	return errors.Join(errs...)
}

// ParseKnobs decodes and validates a knobs.json document.
func ParseKnobs(data []byte) (Knobs, error) {
	var k Knobs
	if err := json.Unmarshal(data, &k); err != nil {
		return Knobs{}, err
	}
	if err := k.Validate(); err != nil {
		return Knobs{}, err
	}
	if k.Flap && k.FlapPeriod == 0 {
		k.FlapPeriod = DefaultFlapPeriod
	}
	return k, nil
}

// LoadKnobs reads <dir>/knobs.json. A missing file means no faults.
func LoadKnobs(dir string) (Knobs, error) {
	path := filepath.Join(dir, KnobsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Knobs{}, nil
	}
	if err != nil {
		return Knobs{}, fmt.Errorf("reading knobs: %w", err)
	}
	k, err := ParseKnobs(data)
	if err != nil {
		return Knobs{}, fmt.Errorf("parsing %s: %w", path, err)
	}
	return k, nil
}

// WriteKnobs validates k and writes it to <dir>/knobs.json, replacing the
// file atomically (a temporary file renamed into place).
func WriteKnobs(dir string, k Knobs) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("writing knobs to %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding knobs: %w", err)
	}
	data = append(data, '\n')
	f, err := os.CreateTemp(dir, ".tmp-knobs-*")
	if err != nil {
		return fmt.Errorf("writing knobs: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing knobs to %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, KnobsFile)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing knobs: %w", err)
	}
	return nil
}

// failAt reports whether the n-th "/" request (1-based, counted since
// ready) fails when it arrives sinceReady after the service became ready.
// The counter rule fails request n exactly when floor(n*rate) grows, which
// spreads failures evenly and makes the rate exact over any long run.
func (k Knobs) failAt(n uint64, sinceReady time.Duration) bool {
	if k.ErrorRate <= 0 {
		return false
	}
	if k.Flap && k.FlapPeriod > 0 && (sinceReady/k.FlapPeriod)%2 == 1 {
		return false
	}
	if k.ErrorRate >= 1 {
		return true
	}
	return uint64(float64(n)*k.ErrorRate) > uint64(float64(n-1)*k.ErrorRate)
}
