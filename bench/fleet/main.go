// Command fleet benchmarks flightdeck's SSH target against a fleet of
// loopback sshd servers. It is run by hand through bench/fleet.sh, never
// in CI.
//
//	fleet serve  -hosts 100 -dir D   start the servers, write D/cluster.json, run until stdin closes
//	fleet deploy -cluster D/cluster.json -runs 5
//	                                 deploy r1 (500 files, 20 MB) cold, r2 (10 files changed),
//	                                 then time fleet rollbacks r2 -> r1 over open connections
//	fleet release -dir D -id r1      write the same release tree (500 files, 20 MB) for other tools
//	fleet push -cluster C -release D -id r1 -subdir S
//	                                 one cold deploy of that tree, as a CLI would: hash the
//	                                 manifest, connect, prepare every host, switch every host
//	fleet verify -cluster C -release D -id r1 -subdir S [-remove]
//	                                 check every host's S/current is the release with the same
//	                                 files, then optionally delete S on every host
//	fleet cli, fleet etcd, fleet state  see cli.go and state.go
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
	fdssh "flightdeck/targets/ssh"
	"flightdeck/targets/ssh/sshtest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fleet serve|deploy|release|push|verify|cli|etcd|state [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "deploy":
		err = deploy(os.Args[2:])
	case "release":
		err = release(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	case "verify":
		err = verify(os.Args[2:])
	case "cli":
		err = cli(os.Args[2:])
	case "etcd":
		err = etcdServe(os.Args[2:])
	case "state":
		err = stateCompare(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// clusterFile describes running servers for the deploy step and the
// Capistrano/Ansible comparisons in fleet.sh.
type clusterFile struct {
	User       string   `json:"user"`
	ClientKey  string   `json:"client_key"`
	KnownHosts string   `json:"known_hosts"`
	Addrs      []string `json:"addrs"`
	Ports      []int    `json:"ports"`
	DeployTo   []string `json:"deploy_to"`
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	n := fs.Int("hosts", 20, "number of sshd servers")
	dir := fs.String("dir", "", "directory for keys, configs and deploy dirs")
	_ = fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	c, err := sshtest.New(*dir, *n, sshtest.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	cf := clusterFile{User: c.User, ClientKey: c.ClientKey, KnownHosts: c.KnownHosts}
	for _, s := range c.Servers {
		cf.Addrs = append(cf.Addrs, s.Addr)
		cf.Ports = append(cf.Ports, s.Port)
		cf.DeployTo = append(cf.DeployTo, s.DeployTo)
	}
	b, _ := json.MarshalIndent(cf, "", " ")
	if err := os.WriteFile(filepath.Join(*dir, "cluster.json"), b, 0o600); err != nil {
		return err
	}
	fmt.Printf("%d servers up, cluster file %s\n", *n, filepath.Join(*dir, "cluster.json"))
	// Run until stdin closes or a signal arrives.
	return waitStdin()
}

func deploy(args []string) error {
	fs := flag.NewFlagSet("deploy", flag.ExitOnError)
	cluster := fs.String("cluster", "", "cluster.json written by fleet serve")
	runs := fs.Int("runs", 5, "rollback runs")
	files := fs.Int("files", 500, "files in the release")
	total := fs.Int("bytes", 20<<20, "total release size")
	parallel := fs.Int("parallel", 16, "hosts prepared at once")
	transfer := fs.String("transfer", "auto", "auto | sftp | tar")
	subdir := fs.String("subdir", "app", "deploy_to below each server's deploy directory (a new one deploys cold)")
	dials := fs.Int("dials", 0, "connections set up at once (0: the pool's default)")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*cluster)
	if err != nil {
		return err
	}
	var cf clusterFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return err
	}
	mode := map[string]fdssh.Transfer{"auto": fdssh.TransferAuto, "sftp": fdssh.TransferSFTP, "tar": fdssh.TransferTar}[*transfer]

	work, err := os.MkdirTemp("", "fleet-artifacts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r1, err := artifact(filepath.Join(work, "r1"), "r1", *files, *total, 0)
	if err != nil {
		return err
	}
	r2, err := artifact(filepath.Join(work, "r2"), "r2", *files, *total, 10)
	if err != nil {
		return err
	}

	pool := fdssh.NewPool(fdssh.PoolOptions{Transfer: mode, MaxParallelDials: *dials})
	defer pool.Close()
	hosts := make([]*fdssh.Host, len(cf.Addrs))
	for i, a := range cf.Addrs {
		hosts[i] = pool.Host(fmt.Sprintf("h%03d", i), fdssh.Target{
			User: cf.User, Addr: a, DeployTo: filepath.Join(cf.DeployTo[i], *subdir),
			IdentityFiles: []string{cf.ClientKey}, ExplicitIdentity: true,
			KnownHosts:     []string{cf.KnownHosts},
			ConnectTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute,
		})
	}
	ctx := context.Background()
	fmt.Printf("fleet: %d hosts, release %d files / %d bytes, transfer %s\n", len(hosts), *files, *total, *transfer)

	d, err := timed(func() error { return each(hosts, len(hosts), func(h *fdssh.Host) error { return h.Connect(ctx) }) })
	if err != nil {
		return err
	}
	fmt.Printf("connect (cold, %d dials at once): %d ms\n", cmp.Or(*dials, fdssh.DefaultMaxParallelDials), d.Milliseconds())

	for _, a := range []*engine.Artifact{r1, r2} {
		var sent int64
		d, err := timed(func() (err error) {
			sent, err = prepareAll(ctx, hosts, a, *parallel)
			return err
		})
		if err != nil {
			return err
		}
		sw, err := timed(func() error {
			return each(hosts, len(hosts), func(h *fdssh.Host) error {
				return h.Switch(ctx, engine.SwitchInfo{Release: a.ID, Actor: "bench"})
			})
		})
		if err != nil {
			return err
		}
		fmt.Printf("deploy %s: prepare %d ms (%.1f MB sent in all), switch %d ms\n",
			a.ID, d.Milliseconds(), float64(sent)/1e6, sw.Milliseconds())
	}

	var totals, skews, checks, switches, switchSkews []float64
	rollback := engine.SwitchInfo{Release: "r1", Previous: "r2", Actor: "bench", Action: "rollback"}
	forward := func() error { // untimed, so that the next run is a real rollback
		return each(hosts, len(hosts), func(h *fdssh.Host) error {
			return h.Switch(ctx, engine.SwitchInfo{Release: "r2", Previous: "r1", Actor: "bench"})
		})
	}
	for run := range *runs {
		total, skew, err := switchAll(ctx, hosts, rollback)
		if err != nil {
			return err
		}
		totals, skews = append(totals, ms(total)), append(skews, ms(skew))
		fmt.Printf("rollback run %d: %.1f ms, skew %.1f ms\n", run+1, ms(total), ms(skew))
		if err := forward(); err != nil {
			return err
		}
		// As a rollback run does it: r1 checked on every host first, then
		// every host switched without listing it again.
		check, err := timed(func() error {
			return each(hosts, len(hosts), func(h *fdssh.Host) error { return h.Check(ctx, "r1") })
		})
		if err != nil {
			return err
		}
		checked := rollback
		checked.Checked = true
		sw, swSkew, err := switchAll(ctx, hosts, checked)
		if err != nil {
			return err
		}
		checks, switches, switchSkews = append(checks, ms(check)), append(switches, ms(sw)), append(switchSkews, ms(swSkew))
		fmt.Printf("rollback run %d, checked first: check %.1f ms, then switches %.1f ms, skew %.1f ms\n",
			run+1, ms(check), ms(sw), ms(swSkew))
		if err := forward(); err != nil {
			return err
		}
	}
	fmt.Printf("RESULT hosts=%d rollback_median_ms=%.1f skew_median_ms=%.1f check_median_ms=%.1f switch_only_median_ms=%.1f switch_only_skew_median_ms=%.1f peak_rss_mb=%.1f\n",
		len(hosts), median(totals), median(skews), median(checks), median(switches), median(switchSkews), peakRSSMB())
	// Leave the fleet on r1 for the comparisons that follow.
	return each(hosts, len(hosts), func(h *fdssh.Host) error {
		return h.Switch(ctx, engine.SwitchInfo{Release: "r1", Actor: "bench", Action: "rollback"})
	})
}

// switchAll switches every host at once as info says, and returns how
// long that took and the first-to-last skew of the hosts' switches.
func switchAll(ctx context.Context, hosts []*fdssh.Host, info engine.SwitchInfo) (total, skew time.Duration, err error) {
	start := time.Now()
	done := make([]time.Duration, len(hosts))
	err = eachIndexed(hosts, len(hosts), func(i int, h *fdssh.Host) error {
		err := h.Switch(ctx, info)
		done[i] = time.Since(start)
		return err
	})
	total = time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	slices.Sort(done)
	return total, done[len(done)-1] - done[0], nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func each(hosts []*fdssh.Host, limit int, f func(*fdssh.Host) error) error {
	return eachIndexed(hosts, limit, func(_ int, h *fdssh.Host) error { return f(h) })
}

// eachIndexed runs f for every host, at most limit at once, and returns
// the first error.
func eachIndexed(hosts []*fdssh.Host, limit int, f func(int, *fdssh.Host) error) error {
	sem := make(chan struct{}, limit)
	errs := make(chan error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i, h); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// artifact writes n files totalling size bytes; the first `changed` files
// differ from release seed 0 (r1).
func artifact(dir, id string, n, size, changed int) (*engine.Artifact, error) {
	if err := writeTree(dir, id, n, size, changed); err != nil {
		return nil, err
	}
	m, err := engine.BuildManifest(dir, id)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", dir, err)
	}
	return &engine.Artifact{ID: id, Dir: dir, Manifest: m}, nil
}

// writeTree writes the release tree of artifact: n pseudo-random files
// (the same bytes for the same index) in 20 directories, and VERSION.
func writeTree(dir, id string, n, size, changed int) error {
	per := size / n
	buf := make([]byte, per)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("assets/%02d/file%04d.bin", i%20, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if i < changed {
			copy(buf, id)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "VERSION"), []byte(id), 0o644)
}

// peakRSSMB reads the process's peak resident set size (VmHWM).
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// prepareAll prepares a on every host, n at a time, and returns the bytes
// actually sent.
func prepareAll(ctx context.Context, hosts []*fdssh.Host, a *engine.Artifact, n int) (int64, error) {
	var sent int64
	var mu sync.Mutex
	err := each(hosts, n, func(h *fdssh.Host) error {
		var last engine.Progress
		if err := h.Prepare(ctx, a, func(p engine.Progress) { last = p }); err != nil {
			return err
		}
		mu.Lock()
		sent += last.BytesSent
		mu.Unlock()
		return nil
	})
	return sent, err
}
