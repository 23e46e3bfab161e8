package etcdstate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/etcdstate/etcdtest"
	"flightdeck/targets/local"
)

// BenchmarkJournalCommit measures journal commits (one Append: one fsync
// for the file journal, one transaction for etcd) with one event per
// commit (group commit off) and 64 (on): ns/op is per commit, and the
// p50/p99 commit latencies and events/s are reported. The etcd journal is
// fenced by a held lock, as in a run, on a 3-member cluster on loopback
// whose members fsync to the same disk as the file journal.
func BenchmarkJournalCommit(b *testing.B) {
	c := etcdtest.Start(b, 3)
	for _, backend := range []string{"file", "etcd"} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", backend, batch), func(b *testing.B) {
				appendFn := benchJournal(b, backend, c)
				evs := make([]engine.Event, batch)
				var lat []time.Duration
				seq := uint64(0)
				b.ResetTimer()
				for b.Loop() {
					for i := range evs {
						seq++
						evs[i] = engine.Event{Seq: seq, Run: "bench", Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhasePreparing,
							Progress: &engine.Progress{FilesDone: i, FilesTotal: 1000}, Time: time.Now()}
					}
					t0 := time.Now()
					if err := appendFn(evs); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

func benchJournal(b *testing.B, backend string, c *etcdtest.Cluster) func([]engine.Event) error {
	if backend == "file" {
		j, err := engine.OpenJournal(b.TempDir(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { j.Close() })
		return func(evs []engine.Event) error { return j.Append(evs...) }
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: "/bench/" + engine.RandomSuffix(4), Lease: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	l, err := s.AcquireLock(ctx, "production", engine.LockInfo{Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Release(ctx) })
	j, err := s.OpenJournal(ctx, "bench", l)
	if err != nil {
		b.Fatal(err)
	}
	return func(evs []engine.Event) error { return j.Append(ctx, evs...) }
}

// BenchmarkDeploy20Hosts times a whole symlink deploy of a one-file change
// to 20 local hosts with the journal and the lock in files and in a
// 3-member etcd on loopback. Each iteration deploys on both (same hosts
// layout, plan and change; alternating which goes first), so that the
// shared machine's load falls on both alike: file-ms and etcd-ms are the
// mean deploy times, etcd/file their ratio, commits/run the journal
// writes of one etcd run. Both journals are on the same disk (the test's
// temporary directory holds the state directory and the members' data
// directories). The etcd store stays open from deploy to deploy, as in a
// cockpit: its lock's lease is granted once, during the first, untimed,
// deploy (deploy and rollback commands grant it while they build), and
// the lock's release after each run is timed apart (etcd-release-after).
// The members run on the machine's own CPUs: members-cpu-ms is their CPU
// time during each kind of deploy.
func BenchmarkDeploy20Hosts(b *testing.B) {
	c := etcdtest.Start(b, 3)
	file, etcd := newBenchFleet(b, nil), newBenchFleet(b, c)
	file.deploy(0)
	etcd.deploy(0) // the first release: every file goes out
	var tf, te, cf, ce time.Duration
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		for _, f := range [][]*benchFleet{{file, etcd}, {etcd, file}}[i%2] {
			cpu0 := membersCPU(b, c)
			d := f.deploy(i)
			cpu := membersCPU(b, c) - cpu0
			if f == file {
				tf, cf = tf+d, cf+cpu
			} else {
				te, ce = te+d, ce+cpu
			}
		}
	}
	b.ReportMetric(float64(tf.Milliseconds())/float64(b.N), "file-ms")
	b.ReportMetric(float64(te.Milliseconds())/float64(b.N), "etcd-ms")
	b.ReportMetric(float64(te)/float64(tf), "etcd/file")
	// The members share this machine's CPUs with the deploy: their CPU
	// time during each kind of deploy (during a file deploy: heartbeats
	// and lease renewals only).
	b.ReportMetric(float64(cf.Milliseconds())/float64(b.N), "members-cpu-ms/file-deploy")
	b.ReportMetric(float64(ce.Milliseconds())/float64(b.N), "members-cpu-ms/etcd-deploy")
	for _, f := range []*benchFleet{file, etcd} {
		kind := "file"
		if f.store != nil {
			kind = "etcd"
		}
		for what, d := range f.timed.sum {
			b.ReportMetric(float64(d.Microseconds())/1000/float64(b.N+1), kind+"-"+what+"-ms")
			b.ReportMetric(float64(f.timed.n[what])/float64(b.N+1), kind+"-"+what+"-calls")
		}
	}
	runs, err := etcd.store.ListRuns(context.Background())
	if err == nil && len(runs) > 0 {
		keys, err := etcd.store.cli.Get(context.Background(), etcd.store.journalPrefix(runs[len(runs)-1].Run), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil {
			b.ReportMetric(float64(keys.Count), "commits/run")
		}
	}
}

// membersCPU is the CPU time the cluster's members used so far (user
// and system, from /proc; 10 ms clock ticks).
func membersCPU(b *testing.B, c *etcdtest.Cluster) time.Duration {
	var ticks int64
	for _, m := range c.Members {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.PID()))
		if err != nil {
			b.Fatalf("etcd member %s: %v", m.Name, err)
		}
		// Fields after the command name (in parentheses): state is the
		// first, utime and stime the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, i := range []int{11, 12} {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				b.Fatalf("etcd member %s: /proc stat field %d: %v", m.Name, i+3, err)
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

type benchFleet struct {
	b     testing.TB
	src   string
	plan  *plan.Plan
	eng   *engine.Engine
	store *Store
	timed *timedState
}

func newBenchFleet(b testing.TB, c *etcdtest.Cluster) *benchFleet {
	dir := b.TempDir()
	src := filepath.Join(dir, "build")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var y strings.Builder
	y.WriteString("app: shop\nsource: ./build\nkeep_releases: 3\nenvironments:\n  production:\n    hosts:\n")
	for i := range 20 {
		fmt.Fprintf(&y, "      - {name: web-%d, local: %s}\n", i+1, filepath.Join(dir, "hosts", fmt.Sprintf("web-%d", i+1)))
	}
	y.WriteString("    strategy: {kind: symlink}\n")
	pf := filepath.Join(dir, "flightdeck.yaml")
	if err := os.WriteFile(pf, []byte(y.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := plan.Load(pf)
	if err != nil {
		b.Fatal(err)
	}
	env, _ := p.Env("")
	var hosts []engine.Host
	for _, h := range env.Hosts {
		hosts = append(hosts, local.New(h.Name, h.Local))
	}
	f := &benchFleet{b: b, src: src, plan: p,
		eng: &engine.Engine{Plan: p, Env: env, Hosts: hosts, StateDir: filepath.Join(dir, ".flightdeck"), Hub: engine.NewHub()}}
	if c != nil {
		s, err := Open(context.Background(), Config{Endpoints: c.Endpoints(), Prefix: "/bench/" + engine.RandomSuffix(4)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		f.store = s
		f.eng.State = Backend{Store: s}
	}
	f.timed = newTimedState(f.eng.StateBackend())
	f.eng.State = f.timed
	return f
}

// deploy builds release i (one file changed) and times its deploy.
func (f *benchFleet) deploy(i int) time.Duration {
	b := f.b
	if err := os.WriteFile(filepath.Join(f.src, "f00.txt"), []byte(fmt.Sprintf("release %d\n", i)), 0o644); err != nil {
		b.Fatal(err)
	}
	a, cleanup, err := engine.Build(context.Background(), f.plan, fmt.Sprintf("r%04d", i), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cleanup()
	t0 := time.Now()
	st, err := f.eng.Deploy(context.Background(), engine.Actor{Name: "bench", Role: engine.RoleOwner}, a, "bench")
	d := time.Since(t0)
	if err != nil || st.Outcome != engine.OutcomeSucceeded {
		b.Fatalf("deploy: %v %+v", err, st)
	}
	if f.store != nil {
		// The lock is released in the background once the run is over
		// (the next lock waits for it): time it apart, outside the deploy.
		t1 := time.Now()
		if err := f.store.released(context.Background(), f.eng.Env.Name); err != nil {
			b.Fatal(err)
		}
		f.timed.add("release-after", t1)
	}
	return d
}

// timedState wraps a state backend and adds up the time spent in each of
// its calls, so that the deploy benchmark can say where the etcd
// backend's added time goes.
type timedState struct {
	engine.StateBackend
	mu  sync.Mutex
	sum map[string]time.Duration
	n   map[string]int
}

func newTimedState(s engine.StateBackend) *timedState {
	return &timedState{StateBackend: s, sum: map[string]time.Duration{}, n: map[string]int{}}
}

func (t *timedState) add(what string, since time.Time) {
	t.mu.Lock()
	t.sum[what] += time.Since(since)
	t.n[what]++
	t.mu.Unlock()
}

func (t *timedState) ListRuns(ctx context.Context) ([]engine.RunSummary, error) {
	defer t.add("list", time.Now())
	return t.StateBackend.ListRuns(ctx)
}

func (t *timedState) ReadJournal(ctx context.Context, run string) ([]engine.Event, error) {
	defer t.add("read", time.Now())
	return t.StateBackend.ReadJournal(ctx, run)
}

func (t *timedState) AcquireLock(ctx context.Context, env string, info engine.LockInfo) (engine.HeldLock, error) {
	defer t.add("lock", time.Now())
	l, err := t.StateBackend.AcquireLock(ctx, env, info)
	if err != nil {
		return nil, err
	}
	return timedLock{l, t}, nil
}

type timedLock struct {
	engine.HeldLock
	t *timedState
}

func (l timedLock) OpenJournal(ctx context.Context, run string) (engine.RunJournal, error) {
	defer l.t.add("open", time.Now())
	j, err := l.HeldLock.OpenJournal(ctx, run)
	if err != nil {
		return nil, err
	}
	return timedJournal{j, l.t}, nil
}

func (l timedLock) RunsAtLock(ctx context.Context) ([]engine.RunSummary, bool, error) {
	rl, ok := l.HeldLock.(engine.RunsAtLock)
	if !ok {
		return nil, false, nil
	}
	defer l.t.add("list-at-lock", time.Now())
	return rl.RunsAtLock(ctx)
}

func (l timedLock) Fence(ctx context.Context) error {
	defer l.t.add("fence", time.Now())
	return l.HeldLock.Fence(ctx)
}

func (l timedLock) Release() error {
	defer l.t.add("release", time.Now())
	return l.HeldLock.Release()
}

type timedJournal struct {
	engine.RunJournal
	t *timedState
}

func (j timedJournal) Append(ctx context.Context, evs ...engine.Event) error {
	defer j.t.add("append", time.Now())
	return j.RunJournal.Append(ctx, evs...)
}
