// Command hitless measures flightdeck's zero-downtime figures on the demo
// fleet, through the real engine, router, service processes and probe. It
// is run by hand through bench/hitless.sh, never in CI.
//
//	hitless cycles -flightdeck BIN [-n 50] [-rate 2000] [-hosts 8] [-strategies canary,canary-abort,bluegreen,ab,rolling,symlink] [-steady 5s]
//	    per strategy: one demo fleet; the probe alone for -steady (steady
//	    state), then n cycles of deploy + fleet rollback under probe
//	    traffic (canary-abort: a canary deploy rolled back by an operator
//	    command once it reaches 25 %); failed requests, longest success
//	    gap, p99 during deploys against steady state, rollback RTO, and the
//	    peak memory of this process (engine, router, probe) plus the
//	    fleet's service processes.
//	    With -modes local,lab the same cycles run on the local fleet and
//	    then on a lab of -hosts containers reached over SSH (one lab for
//	    every strategy, removed at the end), and the table has both; the
//	    lab rows add the peak memory of its containers.
//	    With -routers flightdeck,haproxy,nginx each strategy runs through
//	    the built-in router, a real HAProxy and a real nginx in turn (rows
//	    "STRATEGY via haproxy"); HAProxy's and nginx's own memory is not in
//	    the sums.
//	hitless mem -flightdeck BIN [-hosts 8] [-rate 2000] [-strategy canary]
//	    runs `BIN demo --headless` and samples the RSS (and PSS) of it and
//	    all its descendants every 100 ms; prints the peak sums.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/engine/probe"
	"flightdeck/targets/demo"
	"flightdeck/targets/lab"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hitless cycles|mem [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "cycles":
		err = cycles(ctx, os.Args[2:])
	case "mem":
		err = mem(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: use cycles or mem", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hitless:", err)
		os.Exit(1)
	}
}

// result is what one strategy's cycles measured.
type result struct {
	strategy       string
	cycles         int
	steady         probe.Report
	deployOK       int
	outcomes       map[engine.Outcome]int
	requests       int64
	failed         int64
	longestGap     time.Duration
	deployP99      []time.Duration
	rto            []time.Duration
	inconclusive   int
	peakRSS        int64 // sum over the processes
	peakPSS        int64 // sum over the processes (shared pages split between them)
	peakSelf       int64 // this process: engine, router and probe
	peakProcs      int
	peakLab        uint64 // lab mode: the containers' memory, summed
	firstFailedRun string
}

var bench = engine.Actor{Name: "bench", Role: engine.RoleOwner, Via: "bench"}

func cycles(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cycles", flag.ExitOnError)
	bin := fs.String("flightdeck", "", "the flightdeck binary (runs the demo services and restart hooks)")
	n := fs.Int("n", 50, "deploy/rollback cycles per strategy")
	rate := fs.Int("rate", 2000, "probe requests per second")
	hosts := fs.Int("hosts", 8, "demo hosts")
	list := fs.String("strategies", "canary,canary-abort,bluegreen,ab,rolling,symlink", "strategies to run, comma separated")
	steady := fs.Duration("steady", 5*time.Second, "probe-only window before the cycles (steady-state p99)")
	keep := fs.String("keep", "", "keep each strategy's fleet (and its journal) in this directory instead of a temporary one")
	modes := fs.String("modes", "local", "where the fleet runs: local, lab (containers over SSH), or local,lab")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the cycles (not the steady-state window) to this file")
	routers := fs.String("routers", "flightdeck", "traffic layers, comma separated: flightdeck (the built-in router), haproxy, nginx (real ones, started for each fleet)")
	_ = fs.Parse(args)
	if *bin == "" {
		return fmt.Errorf("-flightdeck is required (go build -o BIN ./cmd/flightdeck)")
	}
	if *n < 1 || *n > 10000 {
		return fmt.Errorf("-n %d: choose 1 to 10000", *n)
	}
	sc, err := demo.FindScenario("good")
	if err != nil {
		return err
	}
	var results []*result
	for _, mode := range strings.Split(*modes, ",") {
		var l *lab.Lab
		switch mode = strings.TrimSpace(mode); mode {
		case "local":
		case "lab":
			var done func()
			if l, done, err = startLab(ctx, *bin, *hosts); err != nil {
				return err
			}
			defer done()
		default:
			return fmt.Errorf("-modes: unknown mode %q (local, lab)", mode)
		}
		for _, rt := range strings.Split(*routers, ",") {
			rt = strings.TrimSpace(rt)
			for _, name := range strings.Split(*list, ",") {
				name = strings.TrimSpace(name)
				if name == "" {
					continue
				}
				opts := demo.Options{Hosts: *hosts, Scenario: sc, Rate: *rate, Binary: *bin, Lab: l, KeepLab: l != nil, Router: rt}
				if *keep != "" {
					opts.Dir = filepath.Join(*keep, mode, rt, name)
				}
				r, err := runStrategy(ctx, name, opts, *n, *steady, *cpuprofile)
				if err != nil {
					return fmt.Errorf("%s (%s, %s): %w", name, mode, rt, err)
				}
				if rt != "flightdeck" {
					r.strategy += " via " + rt
				}
				if l != nil {
					r.strategy += " (lab)"
				}
				results = append(results, r)
				printResults(results[len(results)-1:], *rate, *hosts, false)
			}
		}
	}
	fmt.Println()
	printResults(results, *rate, *hosts, true)
	return nil
}

func runStrategy(ctx context.Context, name string, opts demo.Options, n int, steady time.Duration, cpuprofile string) (*result, error) {
	abort := name == "canary-abort"
	opts.Strategy = plan.StrategyKind(name)
	if abort {
		opts.Strategy = plan.Canary
	}
	fmt.Fprintf(os.Stderr, "── %s: starting a %d-host fleet\n", name, opts.Hosts)
	fleet, err := demo.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start the demo fleet: %w", err)
	}
	defer fleet.Close()
	r := &result{strategy: name, cycles: n, outcomes: map[engine.Outcome]int{}}

	memCtx, stopMem := context.WithCancel(ctx)
	var memWG sync.WaitGroup
	memWG.Add(1)
	go func() {
		defer memWG.Done()
		sampleMemory(memCtx, func() []int { return append([]int{os.Getpid()}, fleet.ServicePIDs()...) }, r)
	}()
	if l := fleet.Lab(); l != nil {
		memWG.Add(1)
		go func() {
			defer memWG.Done()
			sampleLabMemory(memCtx, l.Clone(), r)
		}()
	}
	defer func() { stopMem(); memWG.Wait() }()

	stopOp := resumeInconclusive(ctx, fleet, &r.inconclusive)
	defer stopOp()

	p, err := probe.New(probe.Config{URL: fleet.ProxyURL, Rate: float64(opts.Rate), Timeout: 2 * time.Second, UserHeader: "X-User", Duration: steady})
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
	r.steady = p.Snapshot()
	fmt.Fprintf(os.Stderr, "   steady state: %d requests, %d failed, p50 %s, p99 %s, longest gap %s\n", r.steady.Total.Requests, r.steady.Total.Failed, r.steady.Total.P50, r.steady.Total.P99, r.steady.LongestGap.Round(time.Millisecond))

	if cpuprofile != "" {
		f, err := os.Create(cpuprofile + "." + name)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	for i := range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var dep *engine.State
		if abort {
			dep, err = deployAndAbort(ctx, fleet)
		} else {
			dep, err = fleet.Deploy(ctx, bench, false)
		}
		if err != nil {
			return nil, fmt.Errorf("cycle %d: deploy: %w", i+1, err)
		}
		r.account(dep)
		line := fmt.Sprintf("   cycle %d/%d: deploy %s", i+1, n, describe(dep))
		if abort {
			if dep.Report != nil && dep.Report.RTO > 0 {
				r.rto = append(r.rto, dep.Report.RTO)
			}
		} else {
			if dep.Outcome != engine.OutcomeSucceeded {
				// The engine rolled it back (a gate or the trigger, on a
				// loaded machine): there is nothing to roll back from.
				fmt.Fprintln(os.Stderr, line+"; no rollback (the deploy did not succeed)")
				continue
			}
			r.deployOK++
			if dep.Report != nil && dep.Report.Probe != nil {
				r.deployP99 = append(r.deployP99, dep.Report.Probe.P99)
			}
			rb, err := fleet.Rollback(ctx, bench, "")
			if err != nil {
				return nil, fmt.Errorf("cycle %d: rollback: %w", i+1, err)
			}
			r.account(rb)
			if rb.Report != nil && rb.Outcome == engine.OutcomeSucceeded {
				r.rto = append(r.rto, rb.Report.RTO)
			}
			line += "; rollback " + describe(rb)
		}
		fmt.Fprintln(os.Stderr, line)
	}
	return r, nil
}

// account adds a run's probe numbers to the totals.
func (r *result) account(st *engine.State) {
	r.outcomes[st.Outcome]++
	if st.Report == nil || st.Report.Probe == nil {
		return
	}
	pr := st.Report.Probe
	r.requests += pr.Requests
	r.failed += pr.Failed
	if pr.Failed > 0 && r.firstFailedRun == "" {
		r.firstFailedRun = st.Run
	}
	r.longestGap = max(r.longestGap, pr.LongestGap)
}

func describe(st *engine.State) string {
	if st.Report == nil {
		return string(st.Outcome)
	}
	s := fmt.Sprintf("%s in %s", st.Outcome, st.Report.Duration.Round(time.Millisecond))
	if p := st.Report.Probe; p != nil {
		s += fmt.Sprintf(" (%d req, %d failed, p99 %s, gap %s)", p.Requests, p.Failed, p.P99.Round(100*time.Microsecond), p.LongestGap.Round(time.Millisecond))
	}
	if st.Report.RTO > 0 {
		s += fmt.Sprintf(" RTO %s", st.Report.RTO.Round(time.Millisecond))
	}
	if p := st.Report.Probe; p != nil && p.Failed > 0 {
		// Which release failed them ("unknown": no response at all).
		var by []string
		for rel, rp := range p.Releases {
			if rp.Failed > 0 {
				by = append(by, fmt.Sprintf("%s %d/%d", rel, rp.Failed, rp.Requests))
			}
		}
		slices.Sort(by)
		s += fmt.Sprintf(" [run %s; failed by release: %s]", st.Run, strings.Join(by, ", "))
	}
	return s
}

// deployAndAbort starts a canary deploy and, once its traffic reaches
// 25 %, sends the operator's rollback command; it returns the run's state.
func deployAndAbort(ctx context.Context, fleet *demo.Fleet) (*engine.State, error) {
	sub := fleet.Hub.Subscribe(1 << 16)
	defer sub.Close()
	sub.Drain() // the hub's tail of earlier runs
	type res struct {
		st  *engine.State
		err error
	}
	done := make(chan res, 1)
	go func() {
		st, err := fleet.Deploy(ctx, bench, false)
		done <- res{st, err}
	}()
	sent := false
	for {
		select {
		case r := <-done:
			if !sent && r.err == nil && r.st.Outcome != engine.OutcomeRolledBack {
				return r.st, fmt.Errorf("the canary finished (%s) before reaching 25 %%", r.st.Outcome)
			}
			// Rolled back before 25 % (a gate, on a loaded machine): the
			// engine did the abort itself; the cycle counts it.
			return r.st, r.err
		case <-sub.C():
			evs, _ := sub.Drain()
			for _, e := range evs {
				if !sent && e.Type == engine.EvWeightSet && e.Weight != nil && *e.Weight >= 25 {
					if err := fleet.Engine.Send(ctx, engine.Command{Kind: engine.CmdRollback, Actor: bench, Reason: "bench: canary abort"}); err != nil {
						return nil, fmt.Errorf("send rollback: %w", err)
					}
					sent = true
				}
			}
		}
	}
}

// resumeInconclusive takes the decision the headless demo takes: a run
// paused by the gate as inconclusive is resumed (measure again).
func resumeInconclusive(ctx context.Context, fleet *demo.Fleet, count *int) (stop func()) {
	sub := fleet.Hub.Subscribe(1 << 16)
	sub.Drain()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, _, err := sub.Next(ctx)
			if err != nil {
				return
			}
			for _, e := range evs {
				if e.Type == engine.EvPaused && e.Actor == engine.AutoActor.Name {
					*count++
					_ = fleet.Engine.Send(ctx, engine.Command{Kind: engine.CmdResume, Actor: bench, Reason: "bench: measure again"})
				}
			}
		}
	}()
	return func() { cancel(); <-done; sub.Close() }
}

// sampleMemory records in r the peak sums of the RSS (every 100 ms) and
// PSS (every 2 s) of pids() (the first is this process) until ctx ends.
//
// The RSS comes from /proc/PID/statm, which the kernel answers from
// counters. PSS needs /proc/PID/smaps_rollup, which walks every page
// table of the process under its mmap lock: read for 17 processes every
// 100 ms it took 23 % of this process's CPU (a profile of 8 blue/green
// cycles), the process that also runs the router and the probe being
// measured; 1.9 % now.
func sampleMemory(ctx context.Context, pids func() []int, r *result) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for tick := 0; ; tick++ {
		var rss, pss int64
		ps := pids()
		withPSS := tick%20 == 0
		for i, pid := range ps {
			a := rssOf(pid)
			rss += a
			if withPSS {
				_, b := memOf(pid)
				pss += b
			}
			if i == 0 {
				r.peakSelf = max(r.peakSelf, a)
			}
		}
		if rss > r.peakRSS {
			r.peakRSS, r.peakProcs = rss, len(ps)
		}
		r.peakPSS = max(r.peakPSS, pss)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startLab starts the lab the lab mode's fleets run on; done removes it.
func startLab(ctx context.Context, bin string, hosts int) (*lab.Lab, func(), error) {
	d, err := lab.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	root, err := os.MkdirTemp("", "hitless-lab-")
	if err != nil {
		return nil, nil, err
	}
	name := fmt.Sprintf("hitless-%d", os.Getpid())
	fmt.Fprintf(os.Stderr, "── lab mode: starting lab %s of %d hosts\n", name, hosts)
	l, _, err := lab.Up(ctx, d, lab.Options{Name: name, Hosts: hosts, Root: root, Binary: bin})
	if err != nil {
		d.Close()
		os.RemoveAll(root)
		return nil, nil, fmt.Errorf("lab up: %w", err)
	}
	return l, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := l.Down(dctx); err != nil {
			fmt.Fprintln(os.Stderr, "hitless: lab down:", err)
		}
		d.Close()
		os.RemoveAll(root)
	}, nil
}

// sampleLabMemory records in r the peak sum of the lab containers'
// memory (as `docker stats` counts it) every second until ctx ends.
func sampleLabMemory(ctx context.Context, l *lab.Lab, r *result) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if m, err := l.Memory(ctx); err == nil {
			var sum uint64
			for _, v := range m {
				sum += v
			}
			r.peakLab = max(r.peakLab, sum)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// memOf returns a process's RSS and PSS in bytes (from /proc).
// rssOf returns a process's resident set size from /proc/PID/statm.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

func memOf(pid int) (rss, pss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, 0
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:", "VmRSS:":
			rss = kb << 10
		case "Pss:":
			pss = kb << 10
		}
	}
	return rss, pss
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func printResults(rs []*result, rate, hosts int, header bool) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintf(tw, "hitless bench: %d hosts, probe %d req/s\n", hosts, rate)
	}
	fmt.Fprintln(tw, "STRATEGY\tCYCLES\tOUTCOMES\tREQUESTS\tFAILED\tLONGEST GAP\tSTEADY GAP\tSTEADY P99\tDEPLOY P99 p50/max\tRATIO p50/max\tRTO p50/max\tGATE RETRIES\tPEAK RSS sum (procs)\tPEAK PSS sum\tBENCH PROC RSS\tLAB CONTAINERS peak")
	for _, r := range rs {
		var outs []string
		for _, o := range []engine.Outcome{engine.OutcomeSucceeded, engine.OutcomeRolledBack, engine.OutcomeFailed, engine.OutcomeAborted} {
			if r.outcomes[o] > 0 {
				outs = append(outs, fmt.Sprintf("%s %d", o, r.outcomes[o]))
			}
		}
		steady := r.steady.Total.P99
		dp50, dmax := quantile(r.deployP99, 0.5), quantile(r.deployP99, 1)
		ratio := "-"
		if steady > 0 && len(r.deployP99) > 0 {
			ratio = fmt.Sprintf("%.2f/%.2f", float64(dp50)/float64(steady), float64(dmax)/float64(steady))
		}
		dep := "-"
		if len(r.deployP99) > 0 {
			dep = ms(dp50) + "/" + ms(dmax)
		}
		rto := "-"
		if len(r.rto) > 0 {
			rto = ms(quantile(r.rto, 0.5)) + "/" + ms(quantile(r.rto, 1))
		}
		failed := fmt.Sprint(r.failed)
		if r.firstFailedRun != "" {
			failed += " (first: " + r.firstFailedRun + ")"
		}
		labMem := "-"
		if r.peakLab > 0 {
			labMem = fmt.Sprintf("%.1f MB", float64(r.peakLab)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f MB (%d)\t%.1f MB\t%.1f MB\t%s\n", r.strategy, r.cycles, strings.Join(outs, ", "),
			r.requests, failed, ms(r.longestGap), ms(r.steady.LongestGap), ms(steady), dep, ratio, rto, r.inconclusive, float64(r.peakRSS)/(1<<20), r.peakProcs, float64(r.peakPSS)/(1<<20), float64(r.peakSelf)/(1<<20), labMem)
	}
	tw.Flush()
}

// mem runs `flightdeck demo --headless` and reports the peak memory of its
// whole process tree.
func mem(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mem", flag.ExitOnError)
	bin := fs.String("flightdeck", "", "the flightdeck binary")
	hosts := fs.Int("hosts", 8, "demo hosts")
	rate := fs.Int("rate", 2000, "probe requests per second")
	strategy := fs.String("strategy", "canary", "demo strategy")
	_ = fs.Parse(args)
	if *bin == "" {
		return fmt.Errorf("-flightdeck is required")
	}
	dir, err := os.MkdirTemp("", "hitless-mem-")
	if err != nil {
		return err
	}
	defer func() {
		_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(dir)
	}()
	cmd := exec.CommandContext(ctx, *bin, "demo", "--headless", "--hosts", strconv.Itoa(*hosts), "--rate", strconv.Itoa(*rate),
		"--strategy", *strategy, "--dir", filepath.Join(dir, "fleet"))
	out, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	var peakRSS, peakPSS, rootRSS int64
	var peakProcs int
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "demo.log"))
			verdict := "?"
			for _, l := range strings.Split(string(log), "\n") {
				if strings.HasPrefix(l, "verdict: ") {
					verdict = strings.TrimPrefix(l, "verdict: ")
				}
			}
			status := "exit 0"
			if err != nil {
				status = err.Error()
			}
			fmt.Printf("demo --headless --hosts %d --rate %d --strategy %s: %s, verdict %s\n", *hosts, *rate, *strategy, status, verdict)
			fmt.Printf("peak memory of the demo process tree: RSS sum %.1f MB, PSS sum %.1f MB, %d processes; flightdeck itself peaked at %.1f MB RSS\n",
				float64(peakRSS)/(1<<20), float64(peakPSS)/(1<<20), peakProcs, float64(rootRSS)/(1<<20))
			return nil
		case <-t.C:
			pids := append([]int{cmd.Process.Pid}, descendants(cmd.Process.Pid)...)
			var rss, pss int64
			for _, pid := range pids {
				r, p := memOf(pid)
				rss += r
				pss += p
				if pid == cmd.Process.Pid {
					rootRSS = max(rootRSS, r)
				}
			}
			if rss > peakRSS {
				peakRSS, peakProcs = rss, len(pids)
			}
			peakPSS = max(peakPSS, pss)
		}
	}
}

// descendants returns every process below root (from /proc/*/stat).
func descendants(root int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
