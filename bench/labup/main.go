// Command labup measures the lab: `flightdeck lab up --hosts N` cold (the
// image made first) and warm (the image cached), from the command's start
// to every host answering SSH (when it returns); the image's size; and the
// memory of the lab's containers (the sum of what `docker stats` counts:
// each cgroup's usage less its inactive page cache), idle and with the demo
// service running on every host. Run by hand through bench/lab.sh.
//
//	labup -flightdeck BIN [-hosts 8] [-runs 5]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"flightdeck/targets/lab"
)

func main() {
	bin := flag.String("flightdeck", "", "the flightdeck binary")
	hosts := flag.Int("hosts", 8, "lab hosts")
	runs := flag.Int("runs", 5, "warm lab up runs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *hosts, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "labup:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, hosts, runs int) error {
	if bin == "" {
		return fmt.Errorf("-flightdeck is required")
	}
	d, err := lab.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	root, err := os.MkdirTemp("", "labup-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	name := fmt.Sprintf("bench-%d", os.Getpid())
	up := func() (time.Duration, error) {
		cmd := exec.CommandContext(ctx, bin, "lab", "up", "--hosts", fmt.Sprint(hosts), "--name", name)
		cmd.Env = append(os.Environ(), "FLIGHTDECK_LABS="+root)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("lab up: %v\n%s", err, out)
		}
		return time.Since(start), nil
	}
	down := func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return lab.Down(dctx, d, name, root)
	}
	defer down()

	// Cold: no lab image (images in use by another lab cannot be removed;
	// then there is no cold figure).
	cold := "not measured: a lab image is in use by another lab"
	list, err := d.Client().ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", lab.LabelImage)})
	if err != nil {
		return err
	}
	removed := true
	for _, img := range list.Items {
		if _, err := d.Client().ImageRemove(ctx, img.ID, client.ImageRemoveOptions{}); err != nil {
			removed = false
		}
	}
	t, err := up()
	if err != nil {
		return err
	}
	if removed {
		cold = t.Round(time.Millisecond).String()
	}
	l, err := lab.Open(ctx, d, name, root)
	if err != nil {
		return err
	}
	img, err := d.Client().ImageInspect(ctx, l.Image)
	if err != nil {
		return err
	}
	idle, err := memory(ctx, l)
	if err != nil {
		return err
	}
	// Every host serving: a release deployed with the lab's own snippet.
	if err := deploy(ctx, bin, l); err != nil {
		return err
	}
	serving, err := memory(ctx, l)
	if err != nil {
		return err
	}
	if err := down(); err != nil {
		return err
	}
	var warm []time.Duration
	for range runs {
		t, err := up()
		if err != nil {
			return err
		}
		warm = append(warm, t)
		if err := down(); err != nil {
			return err
		}
	}
	slices.Sort(warm)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("# %s · load %s · engine %s (API %s)\n", time.Now().UTC().Format(time.RFC3339), strings.Join(strings.Fields(string(load))[:3], " "), d.Server, d.APIVersion)
	fmt.Printf("image %s: %.1f MB\n", l.Image, float64(img.Size)/1e6)
	fmt.Printf("lab up --hosts %d, cold (image made first): %s\n", hosts, cold)
	fmt.Printf("lab up --hosts %d, warm: median %s, min %s, max %s over %d runs\n", hosts,
		warm[len(warm)/2].Round(time.Millisecond), warm[0].Round(time.Millisecond), warm[len(warm)-1].Round(time.Millisecond), len(warm))
	fmt.Printf("memory of the %d containers, idle (init, sshd): %s\n", hosts, idle)
	fmt.Printf("memory of the %d containers, each serving the demo service: %s\n", hosts, serving)
	return nil
}

// memSample is the sum over the containers, sampled 10 times 500 ms apart.
type memSample struct{ median, max uint64 }

func (m memSample) String() string {
	return fmt.Sprintf("sum %.1f MB median, %.1f MB max of 10 samples", float64(m.median)/1e6, float64(m.max)/1e6)
}

func memory(ctx context.Context, l *lab.Lab) (memSample, error) {
	var sums []uint64
	for range 10 {
		m, err := l.Memory(ctx)
		if err != nil {
			return memSample{}, err
		}
		var s uint64
		for _, v := range m {
			s += v
		}
		sums = append(sums, s)
		time.Sleep(500 * time.Millisecond) // samples spread over 5 s
	}
	slices.Sort(sums)
	return memSample{median: sums[len(sums)/2], max: sums[len(sums)-1]}, nil
}

func deploy(ctx context.Context, bin string, l *lab.Lab) error {
	dir, err := os.MkdirTemp("", "labup-plan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	snippet, err := os.ReadFile(l.SnippetFile())
	if err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(dir, "build"), 0o755)
	os.WriteFile(filepath.Join(dir, "build", "index.html"), []byte("bench\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "flightdeck.yaml"), append([]byte("app: bench\nsource: ./build\n"), snippet...), 0o644)
	cmd := exec.CommandContext(ctx, bin, "deploy", "--headless", "--release", "r1")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("deploy: %v\n%s", err, out)
	}
	// The hosts' init starts the service within its 500 ms poll of current.
	for _, h := range l.Hosts {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _, err := l.Exec(ctx, h.Name, []string{"/bin/sh", "-c", "wget -q -O - http://127.0.0.1:8080/healthz"})
			if err == nil && strings.Contains(out, `"ok"`) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not serve the release within 30s: %v %s", h.Name, err, out)
			}
			time.Sleep(200 * time.Millisecond) // polling for the service, bounded by the deadline
		}
	}
	return nil
}
