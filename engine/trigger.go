package engine

import (
	"fmt"
	"time"

	"flightdeck/engine/plan"
)

// TriggerSpec is the automatic rollback trigger: "error rate > X % or p99
// > Y for Z". The step asks for one measurement of the new release per
// window and rolls the run back (actor auto) when one breaks a threshold.
type TriggerSpec struct {
	// ErrorRate is the highest error rate in percent (used when ErrorRateSet).
	ErrorRate    float64
	ErrorRateSet bool
	// P99 is the highest p99 (0: not judged).
	P99 time.Duration
	// For is the measurement window.
	For time.Duration
}

// TriggerFromPlan converts a plan's auto_rollback (nil when there is none).
func TriggerFromPlan(ar *plan.AutoRollback) *TriggerSpec {
	if ar == nil {
		return nil
	}
	return &TriggerSpec{ErrorRate: ar.ErrorRate.Value, ErrorRateSet: ar.ErrorRate.Set, P99: ar.P99.Duration, For: ar.For.Duration}
}

// Breach says which threshold a measurement breaks ("" for none; a window
// without requests breaks none).
func (t *TriggerSpec) Breach(m Measurement) string {
	if m.NoData || m.Requests == 0 {
		return ""
	}
	switch {
	case t.ErrorRateSet && m.ErrorRate*100 > t.ErrorRate:
		return fmt.Sprintf("error rate %.2f%% > %g%% for %s", m.ErrorRate*100, t.ErrorRate, t.For)
	case t.P99 > 0 && m.P99 > t.P99:
		return fmt.Sprintf("p99 %s > %s for %s", m.P99.Round(time.Millisecond), t.P99, t.For)
	}
	return ""
}
