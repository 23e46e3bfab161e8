package main

// The state comparison of fleet.sh (COMPARE contains "state"): the same
// one-file deploy from git by the flightdeck binary to every server of the
// cluster, with the journal and the lock in files (--state DIR) and in a
// 3-member etcd on loopback (--etcd), alternating file, etcd, file, etcd…
// (-first etcd: etcd, file, …) in one invocation. Each kind has its own
// deploy_to on every host and its own state directory (hence its own build
// cache), so neither finds the other's releases or builds. fleet.sh puts
// both state directories (-work) and the etcd members' data (fleet etcd
// -dir) below one directory, so that both journals pay the same disk.
//
//	fleet etcd -dir D [-members 3]   start the members (data in D), write D/etcd.json, run until stdin closes
//	fleet state -cluster C -etcd D/etcd.json -bin FD -work DIR -pairs 10 [-first etcd]

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"flightdeck/internal/freeport"
)

// etcdFile describes the running etcd members for `fleet state`.
type etcdFile struct {
	Endpoints []string `json:"endpoints"`
	PIDs      []int    `json:"pids"`
	DataDir   string   `json:"data_dir"`
}

// etcdServe runs an etcd cluster (Debian's etcd binary, its default
// heartbeat, election timeout and fsync) until stdin closes.
func etcdServe(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dir := fs.String("dir", "", "directory for the members' data (on the disk to measure)")
	n := fs.Int("members", 3, "members")
	_ = fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd not found (apt-get install etcd-server): %w", err)
	}
	addrs, err := freeport.Addrs(2 * *n)
	if err != nil {
		return err
	}
	clients, peers := addrs[:*n], addrs[*n:]
	var initial []string
	for i := range *n {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, peers[i]))
	}
	ef := etcdFile{Endpoints: clients, DataDir: *dir}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
			_ = c.Wait()
		}
	}()
	for i := range *n {
		name := fmt.Sprintf("m%d", i)
		log, err := os.Create(filepath.Join(*dir, name+".log"))
		if err != nil {
			return err
		}
		defer log.Close()
		c := exec.Command(bin, "--name", name, "--data-dir", filepath.Join(*dir, name),
			"--listen-client-urls", "http://"+clients[i], "--advertise-client-urls", "http://"+clients[i],
			"--listen-peer-urls", "http://"+peers[i], "--initial-advertise-peer-urls", "http://"+peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "fleet-bench")
		c.Stdout, c.Stderr = log, log
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return fmt.Errorf("start etcd member %s: %w", name, err)
		}
		cmds = append(cmds, c)
		ef.PIDs = append(ef.PIDs, c.Process.Pid)
	}
	if err := etcdReady(clients, 60*time.Second); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(ef, "", " ")
	if err := os.WriteFile(filepath.Join(*dir, "etcd.json"), b, 0o600); err != nil {
		return err
	}
	fmt.Printf("etcd: %d members up at %s, data in %s\n", *n, strings.Join(clients, ","), *dir)
	return waitStdin()
}

// etcdReady waits until a write through every endpoint commits.
func etcdReady(endpoints []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, ep := range endpoints {
		for {
			err := func() error {
				c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
				if err != nil {
					return err
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err = c.Put(ctx, "/fleet-bench/ready", ep)
				return err
			}()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd member %s not ready: %w", ep, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// waitStdin returns when stdin closes or SIGINT/SIGTERM arrives.
func waitStdin() error {
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				break
			}
		}
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	return nil
}

// cpuMS is the CPU time (user + system) the processes have used so far.
func cpuMS(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): state is
		// field 3, utime 14, stime 15.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + st
	}
	return ticks * 10 // USER_HZ is 100 on Linux
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func stateCompare(args []string) error {
	fs := flag.NewFlagSet("state", flag.ExitOnError)
	cluster := fs.String("cluster", "", "cluster.json written by fleet serve")
	etcdJSON := fs.String("etcd", "", "etcd.json written by fleet etcd")
	bin := fs.String("bin", "", "the flightdeck binary")
	work := fs.String("work", "", "directory for the project, the git repository and both state directories (the etcd data's filesystem)")
	pairs := fs.Int("pairs", 10, "file/etcd pairs of one-file deploys")
	files := fs.Int("files", 500, "files in the release")
	total := fs.Int("bytes", 20<<20, "total release size")
	parallel := fs.Int("parallel", 0, "the plan's parallel (0: its default)")
	first := fs.String("first", "file", "the kind deployed first in each pair (file or etcd); the kinds alternate throughout")
	_ = fs.Parse(args)
	if *bin == "" || *work == "" || *etcdJSON == "" {
		return fmt.Errorf("-bin, -work and -etcd are required")
	}
	if *first != "file" && *first != "etcd" {
		return fmt.Errorf("-first: %q is neither file nor etcd", *first)
	}
	cf, err := readCluster(*cluster)
	if err != nil {
		return err
	}
	var ef etcdFile
	b, err := os.ReadFile(*etcdJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &ef); err != nil {
		return fmt.Errorf("%s: %w", *etcdJSON, err)
	}
	proj, err := os.MkdirTemp(*work, "state-project-")
	if err != nil {
		return err
	}
	kinds := []string{"file", "etcd"}
	defer func() {
		os.RemoveAll(proj)
		for _, k := range kinds {
			for _, d := range cf.DeployTo {
				removeTree(filepath.Join(d, "state-"+k))
			}
		}
	}()
	repo := filepath.Join(proj, "repo")
	if err := initRepo(repo, *files, *total); err != nil {
		return err
	}
	plans := map[string]string{}
	for _, k := range kinds {
		plans[k] = filepath.Join(proj, "flightdeck-"+k+".yaml")
		if err := writePlan(plans[k], cf, "state-"+k, *parallel, 0, ""); err != nil {
			return err
		}
	}
	stateArgs := map[string][]string{
		"file": {"--state", filepath.Join(proj, "state-file")},
		"etcd": {"--state", filepath.Join(proj, "state-etcd"), "--etcd", strings.Join(ef.Endpoints, ",")},
	}
	n := len(cf.Addrs)
	fmt.Printf("state: %d hosts, one-file deploys from git (release %d files / %d bytes), symlink; file state and etcd data in %s; etcd %s\n",
		n, *files, *total, *work, strings.Join(ef.Endpoints, ","))
	type result struct{ wall, etcdCPU float64 }
	run := func(kind, what, id string) (result, error) {
		c0 := cpuMS(ef.PIDs)
		r, err := runCLI(*bin, plans[kind], append([]string{"deploy", "--headless", "--json", "--release", id}, stateArgs[kind]...)...)
		if err != nil {
			return result{}, fmt.Errorf("%s %s: %w", kind, what, err)
		}
		res := result{wall: ms(r.wall), etcdCPU: cpuMS(ef.PIDs) - c0}
		fmt.Printf("%s %s: %.0f ms, etcd members' CPU %.0f ms, load %s | %s\n", what, kind, res.wall, res.etcdCPU, loadAvg(), r.breakdown())
		return res, nil
	}
	for _, k := range kinds {
		if _, err := run(k, "cold deploy r1", "r1"); err != nil {
			return err
		}
	}
	var ratios, diffs, fileMS, etcdMS, cpuFile, cpuEtcd []float64
	for i := range *pairs {
		id := fmt.Sprintf("r%d", i+2)
		if err := commitOneFile(repo, id); err != nil {
			return err
		}
		got := map[string]result{}
		for _, k := range kinds {
			if *first == "etcd" {
				k = kinds[1-slices.Index(kinds, k)]
			}
			if got[k], err = run(k, "one-file deploy "+id, id); err != nil {
				return err
			}
		}
		f, e := got["file"], got["etcd"]
		ratios = append(ratios, e.wall/f.wall)
		diffs = append(diffs, e.wall-f.wall)
		fileMS, etcdMS = append(fileMS, f.wall), append(etcdMS, e.wall)
		cpuFile, cpuEtcd = append(cpuFile, f.etcdCPU), append(cpuEtcd, e.etcdCPU)
		fmt.Printf("pair %d: file %.0f ms, etcd %.0f ms, etcd/file %.3f, etcd-file %+.0f ms\n", i+1, f.wall, e.wall, e.wall/f.wall, e.wall-f.wall)
	}
	fmt.Printf("RESULT state hosts=%d pairs=%d file_median_ms=%.0f etcd_median_ms=%.0f ratio_median=%.3f ratio_mean=%.3f added_median_ms=%.0f added_mean_ms=%.0f etcd_cpu_ms_during_etcd_median=%.0f etcd_cpu_ms_during_file_median=%.0f\n",
		n, len(ratios), median(fileMS), median(etcdMS), median(ratios), mean(ratios), median(diffs), mean(diffs), median(cpuEtcd), median(cpuFile))
	return nil
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
