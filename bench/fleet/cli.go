package main

// The end-to-end benchmark of fleet.sh: the flightdeck binary itself, as an
// operator runs it, against the cluster's servers. A git repository holds
// the release (files × bytes); a plan lists every server (symlink strategy,
// the plan's defaults otherwise). It times, each as one CLI process:
//
//   - a cold full deploy (r1: every file sent),
//   - RUNS one-file deploys (one file changed and committed before each),
//   - RUNS rollbacks to the release before,
//
// and reports each process's peak RSS (getrusage of the child) and, from
// the run's JSON events, where the time went (build before the run starts,
// inspect, prepare, switch, finish).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"flightdeck/engine"
)

func cli(args []string) error {
	fs := flag.NewFlagSet("cli", flag.ExitOnError)
	cluster := fs.String("cluster", "", "cluster.json written by fleet serve")
	bin := fs.String("bin", "", "the flightdeck binary")
	runs := fs.Int("runs", 5, "one-file deploys and rollbacks to time")
	files := fs.Int("files", 500, "files in the release")
	total := fs.Int("bytes", 20<<20, "total release size")
	subdir := fs.String("subdir", "cli", "deploy_to below each server's deploy directory (must not exist)")
	parallel := fs.Int("parallel", 0, "the plan's parallel (0: its default)")
	keep := fs.Bool("keep", false, "leave the project and the deploy directories")
	persist := fs.Duration("persist", 0, "the plan's ssh persist (0: off): the commands after the first reach the hosts through its connection keeper")
	_ = fs.Parse(args)
	if *bin == "" {
		return fmt.Errorf("-bin is required")
	}
	cf, err := readCluster(*cluster)
	if err != nil {
		return err
	}
	proj, err := os.MkdirTemp(filepath.Dir(*cluster), "cli-project-")
	if err != nil {
		return err
	}
	if !*keep {
		defer func() {
			os.RemoveAll(proj)
			for _, d := range cf.DeployTo {
				removeTree(filepath.Join(d, *subdir))
			}
		}()
	}
	repo := filepath.Join(proj, "repo")
	if err := initRepo(repo, *files, *total); err != nil {
		return err
	}
	planFile := filepath.Join(proj, "flightdeck.yaml")
	var ctl string
	if *persist > 0 {
		var err error
		if ctl, err = filepath.Abs(filepath.Join(proj, "ctl")); err != nil {
			return err
		}
		if err := os.Mkdir(ctl, 0o700); err != nil {
			return err
		}
		// The keeper outlives each command: stop it with the bench.
		defer func() {
			if b, err := os.ReadFile(filepath.Join(ctl, "keeper.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}()
	}
	if err := writePlan(planFile, cf, *subdir, *parallel, *persist, ctl); err != nil {
		return err
	}
	n := len(cf.Addrs)
	fmt.Printf("cli: %d hosts, release %d files / %d bytes from git, strategy symlink, ssh persist %s\n", n, *files, *total, *persist)

	var keeperPeak float64
	run := func(what string, args ...string) (*cliRun, error) {
		r, err := runCLI(*bin, planFile, args...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		keeper := ""
		if ctl != "" {
			if mb, err := keeperPeakMB(ctl); err == nil {
				keeper = fmt.Sprintf(", keeper's peak RSS so far %.1f MB", mb)
				keeperPeak = max(keeperPeak, mb)
			}
		}
		fmt.Printf("%s: %.0f ms, peak RSS %.1f MB%s | %s\n", what, ms(r.wall), r.rssMB, keeper, r.breakdown())
		return r, nil
	}
	cold, err := run("cold deploy r1", "deploy", "--headless", "--json", "--release", "r1")
	if err != nil {
		return err
	}
	var deploys, rollbacks []*cliRun
	for i := range *runs {
		id := fmt.Sprintf("r%d", i+2)
		if err := commitOneFile(repo, id); err != nil {
			return err
		}
		r, err := run("one-file deploy "+id, "deploy", "--headless", "--json", "--release", id)
		if err != nil {
			return err
		}
		deploys = append(deploys, r)
	}
	last := fmt.Sprintf("r%d", *runs+1)
	for i := range *runs {
		to := fmt.Sprintf("r%d", *runs)
		if i%2 == 1 {
			to = last
		}
		r, err := run("rollback to "+to, "rollback", "--headless", "--json", "--to", to)
		if err != nil {
			return err
		}
		rollbacks = append(rollbacks, r)
	}
	med := func(rs []*cliRun, f func(*cliRun) float64) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		return median(v)
	}
	wall := func(r *cliRun) float64 { return ms(r.wall) }
	rss := func(r *cliRun) float64 { return r.rssMB }
	all := append(append([]*cliRun{cold}, deploys...), rollbacks...)
	if ctl != "" {
		// Connections the keeper lost during the runs, and why.
		if b, err := os.ReadFile(filepath.Join(ctl, "keeper.log")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, " closed: ") {
					fmt.Println("keeper:", line)
				}
			}
		}
	}
	fmt.Printf("RESULT cli persist=%s hosts=%d cold_deploy_ms=%.0f one_file_deploy_median_ms=%.0f rollback_median_ms=%.0f peak_rss_mb=%.1f keeper_peak_rss_mb=%.1f\n",
		*persist, n, ms(cold.wall), med(deploys, wall), med(rollbacks, wall), slices.Max(func() []float64 {
			var v []float64
			for _, r := range all {
				v = append(v, rss(r))
			}
			return v
		}()), keeperPeak)
	return nil
}

// keeperPeakMB reads the peak RSS (VmHWM) of the keeper serving ctl.
func keeperPeakMB(ctl string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(ctl, "keeper.pid"))
	if err != nil {
		return 0, err
	}
	st, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// initRepo makes a git repository (branch main) at repo whose one commit,
// r1, is a release tree of files files and total bytes.
func initRepo(repo string, files, total int) error {
	if err := writeTree(repo, "r1", files, total, 0); err != nil {
		return err
	}
	if err := git(repo, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	return commitAll(repo, "r1")
}

// writePlan writes a plan deploying ./repo (git, branch main) beside it
// to every server of cf, into subdir below each server's deploy directory,
// with the symlink strategy.
func writePlan(path string, cf *clusterFile, subdir string, parallel int, persist time.Duration, controlDir string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "app: fleet\nsource: {git: {repo: ./repo, ref: main}}\nkeep_releases: 5\nenvironments:\n  production:\n")
	if parallel > 0 {
		fmt.Fprintf(&b, "    parallel: %d\n", parallel)
	}
	fmt.Fprintf(&b, "    strategy: {kind: symlink}\n    ssh:\n      identity_file: '%s'\n      known_hosts: '%s'\n      connect_timeout: 30s\n      command_timeout: 2m\n",
		cf.ClientKey, cf.KnownHosts)
	if persist > 0 {
		fmt.Fprintf(&b, "      persist: %s\n      control_dir: '%s'\n", persist, controlDir)
	}
	b.WriteString("    hosts:\n")
	for i, a := range cf.Addrs {
		fmt.Fprintf(&b, "      - {name: h%03d, ssh: '%s@%s', deploy_to: '%s'}\n", i, cf.User, a, filepath.Join(cf.DeployTo[i], subdir))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// cliRun is one flightdeck process: its wall time, peak RSS and events.
type cliRun struct {
	start time.Time
	wall  time.Duration
	rssMB float64
	evs   []engine.Event
}

// runCLI runs the flightdeck binary under GNU time, which reports its peak
// RSS. The rusage of a child of this process would not do: Go starts a
// command with vfork, and Linux counts the peak RSS of the memory the
// child shared until its exec, i.e. this process's, into the child's
// (this process holds every event of the runs so far, ~330 MB at 500
// hosts, and every command then "peaked" at that).
func runCLI(bin, planFile string, args ...string) (*cliRun, error) {
	rss, err := os.CreateTemp("", "fleet-cli-rss-")
	if err != nil {
		return nil, err
	}
	rss.Close()
	defer os.Remove(rss.Name())
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rss.Name(), bin, "-f", planFile}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	r := &cliRun{start: time.Now()}
	err = cmd.Run()
	r.wall = time.Since(r.start)
	if b, rerr := os.ReadFile(rss.Name()); rerr == nil {
		// GNU time writes "Command exited with non-zero status N" first
		// when it did.
		if f := strings.Fields(string(b)); len(f) > 0 {
			if kb, perr := strconv.ParseFloat(f[len(f)-1], 64); perr == nil {
				r.rssMB = kb / 1024
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s%s", bin, strings.Join(args, " "), err, tail(out.String(), 20), tail(stderr.String(), 20))
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e engine.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "" {
			r.evs = append(r.evs, e)
		}
	}
	return r, nil
}

// breakdown says where a run's time went, from its events: before the
// run started (plan, build, connect and inspect every host), prepare
// (first preparing to last prepared), switch (first switching to last
// live/reverted) and the rest to the process's exit.
func (r *cliRun) breakdown() string {
	var started, prepFirst, prepLast, swFirst, swLast, finished time.Time
	first := func(t *time.Time, v time.Time) {
		if t.IsZero() || v.Before(*t) {
			*t = v
		}
	}
	latest := func(t *time.Time, v time.Time) {
		if v.After(*t) {
			*t = v
		}
	}
	for _, e := range r.evs {
		switch {
		case e.Type == engine.EvRunStarted:
			started = e.Time
		case e.Type == engine.EvRunFinished:
			finished = e.Time
		case e.Phase == engine.PhasePreparing:
			first(&prepFirst, e.Time)
		case e.Phase == engine.PhasePrepared:
			latest(&prepLast, e.Time)
		case e.Phase == engine.PhaseSwitching || e.Phase == engine.PhaseReverting:
			first(&swFirst, e.Time)
		case e.Phase == engine.PhaseLive || e.Phase == engine.PhaseReverted:
			latest(&swLast, e.Time)
		}
	}
	d := func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.0f", ms(b.Sub(a)))
	}
	end := r.start.Add(r.wall)
	return fmt.Sprintf("to run start %s, run start to prepare %s, prepare %s, prepared to switch %s, switch %s, switched to finish %s, finish to exit %s (ms)",
		d(r.start, started), d(started, prepFirst), d(prepFirst, prepLast), d(prepLast, swFirst), d(swFirst, swLast), d(swLast, finished), d(finished, end))
}

func git(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@localhost",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func commitAll(repo, msg string) error {
	if err := git(repo, "add", "-A"); err != nil {
		return err
	}
	return git(repo, "commit", "-q", "-m", msg)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// removeTree removes a deploy directory whose releases are read-only.
func removeTree(p string) {
	_ = filepath.Walk(p, func(q string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(q, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(p)
}

// commitOneFile commits release id with one file changed: the first asset
// gets the release id in front.
func commitOneFile(repo, id string) error {
	p := filepath.Join(repo, "assets/00/file0000.bin")
	old, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	copy(old, fmt.Sprintf("%-8s", id))
	if err := os.WriteFile(p, old, 0o644); err != nil {
		return err
	}
	return commitAll(repo, id)
}
