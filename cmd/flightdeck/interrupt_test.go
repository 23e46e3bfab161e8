package main

import (
	"context"
	"strings"
	"testing"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
)

// TestInterruptOfCountsLikeASignal: closing the cockpit during a run is
// the process's first interrupt (the run stops after its work in flight),
// so the next interrupt aborts that work (and rolls back) instead of
// being taken for a first one.
func TestInterruptOfCountsLikeASignal(t *testing.T) {
	var out syncbuf.Buffer
	ctx, stop := interrupts(&out)
	defer stop()
	abort := engine.AbortOf(ctx)
	interrupt := interruptOf(ctx)
	if interrupt == nil || abort == nil {
		t.Fatal("the interrupts context carries no interrupter or abort")
	}
	if interruptOf(context.Background()) != nil {
		t.Fatal("a context without an interrupter has one")
	}
	interrupt("the cockpit was closed during the run")
	if ctx.Err() == nil || abort.Err() != nil {
		t.Fatalf("after the first: stopped %v, aborted %v", ctx.Err(), abort.Err())
	}
	interrupt("interrupt")
	if abort.Err() == nil {
		t.Fatal("the second interrupt did not abort the work in flight")
	}
	for _, want := range []string{"the cockpit was closed during the run: stopping once the work in flight is done", "interrupt again: aborting the work in flight"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, out.String())
		}
	}
}
