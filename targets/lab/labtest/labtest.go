// Package labtest helps tests that need a Docker Engine and a lab: it
// connects (skipping the test when no engine answers, failing under
// CI=true), names labs uniquely, builds the flightdeck binary the lab's
// hosts run, and counts what a lab left behind.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/targets/lab"
)

// Require connects to the Docker Engine (DOCKER_HOST or the default
// socket) and closes the connection when the test ends. Without an engine
// the test is skipped, saying so, or fails when CI=true.
func Require(t testing.TB) *lab.Docker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := lab.Connect(ctx)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a Docker Engine is needed (CI=true): %v", err)
		}
		t.Skipf("skipped: no Docker Engine to run a lab on (install docker.io and start it): %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Name returns a lab name no other test uses: prefix-<6 hex>.
func Name(prefix string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Objects counts the containers, volumes and networks labelled for lab name.
func Objects(t testing.TB, d *lab.Docker, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := d.Objects(ctx, name)
	if err != nil {
		t.Fatalf("count the objects of lab %s: %v", name, err)
	}
	return n
}

// Down removes lab name when the test ends (whatever happened to it).
func Down(t testing.TB, d *lab.Docker, name, root string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(ctx, d, name, root); err != nil {
			t.Errorf("remove lab %s: %v", name, err)
		}
	})
}

// Up starts a lab of n hosts running binary, under a temporary root,
// removed when the test ends.
func Up(t *testing.T, d *lab.Docker, n int, binary string) *lab.Lab {
	t.Helper()
	name, root := Name("t"), t.TempDir()
	Down(t, d, name, root)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, _, err := lab.Up(ctx, d, lab.Options{Name: name, Hosts: n, Root: root, Binary: binary})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}

// UpMany starts count labs of n hosts running binary at the same time
// (lab up waits mostly on the engine), each removed when the test ends.
func UpMany(t *testing.T, d *lab.Docker, count, n int, binary string) []*lab.Lab {
	t.Helper()
	labs := make([]*lab.Lab, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range labs {
		name, root := Name("t"), t.TempDir()
		Down(t, d, name, root)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			labs[i], _, errs[i] = lab.Up(ctx, d, lab.Options{Name: name, Hosts: n, Root: root, Binary: binary})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return labs
}

// BuildBinary builds the flightdeck command into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "flightdeck")
	out, err := exec.Command("go", "build", "-o", bin, "flightdeck/cmd/flightdeck").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build flightdeck: %v\n%s", err, out)
	}
	return bin, nil
}

// Processes lists the processes of this machine whose environment names
// lab name (every process of a lab's containers has FLIGHTDECK_LAB=name).
func Processes(name string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	want := []byte("FLIGHTDECK_LAB=" + name + "\x00")
	for _, e := range entries {
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !containsBytes(env, want) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return out
}

func containsBytes(haystack, needle []byte) bool {
	return strings.Contains(string(haystack), string(needle))
}
