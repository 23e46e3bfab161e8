package main

// The deploy comparison of fleet.sh: the same release tree is written once
// (release), deployed cold by flightdeck (push), Ansible and Capistrano into
// a fresh deploy directory on every host, and each tool's result is checked
// and removed (verify) before the next run.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"flightdeck/engine"
	fdssh "flightdeck/targets/ssh"
)

func readCluster(path string) (*clusterFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster file: %w", err)
	}
	var cf clusterFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, fmt.Errorf("parse cluster file %s: %w", path, err)
	}
	return &cf, nil
}

// release writes the tree that every tool deploys.
func release(args []string) error {
	fs := flag.NewFlagSet("release", flag.ExitOnError)
	dir := fs.String("dir", "", "directory to write the release into (must not exist)")
	id := fs.String("id", "r1", "release id")
	files := fs.Int("files", 500, "files in the release")
	total := fs.Int("bytes", 20<<20, "total release size")
	_ = fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	if err := writeTree(*dir, *id, *files, *total, 0); err != nil {
		return fmt.Errorf("write release %s: %w", *id, err)
	}
	m, err := engine.BuildManifest(*dir, *id)
	if err != nil {
		return err
	}
	n, size := m.Files()
	fmt.Printf("release %s: %d files, %d bytes in %s\n", *id, n, size, *dir)
	return nil
}

// push deploys the release tree cold, as one CLI invocation would: build
// the manifest (hash every file), connect to every host, prepare the
// release on every host, then switch current on every host.
func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	cluster := fs.String("cluster", "", "cluster.json written by fleet serve")
	dir := fs.String("release", "", "release tree written by fleet release")
	id := fs.String("id", "r1", "release id")
	subdir := fs.String("subdir", "", "fresh deploy_to below each server's deploy directory")
	parallel := fs.Int("parallel", 16, "hosts prepared at once (the plan's default)")
	_ = fs.Parse(args)
	if *dir == "" || *subdir == "" {
		return fmt.Errorf("-release and -subdir are required")
	}
	cf, err := readCluster(*cluster)
	if err != nil {
		return err
	}
	ctx := context.Background()
	start := time.Now()
	m, err := engine.BuildManifest(*dir, *id)
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", *dir, err)
	}
	a := &engine.Artifact{ID: *id, Dir: *dir, Manifest: m}
	tManifest := time.Since(start)

	pool := fdssh.NewPool(fdssh.PoolOptions{})
	defer pool.Close()
	hosts := make([]*fdssh.Host, len(cf.Addrs))
	for i, addr := range cf.Addrs {
		hosts[i] = pool.Host(fmt.Sprintf("h%03d", i), fdssh.Target{
			User: cf.User, Addr: addr, DeployTo: filepath.Join(cf.DeployTo[i], *subdir),
			IdentityFiles: []string{cf.ClientKey}, ExplicitIdentity: true,
			KnownHosts:     []string{cf.KnownHosts},
			ConnectTimeout: 30 * time.Second, CommandTimeout: 5 * time.Minute,
		})
	}
	tConnect, err := timed(func() error { return each(hosts, len(hosts), func(h *fdssh.Host) error { return h.Connect(ctx) }) })
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var sent int64
	tPrepare, err := timed(func() (err error) {
		sent, err = prepareAll(ctx, hosts, a, *parallel)
		return err
	})
	if err != nil {
		return fmt.Errorf("prepare %s: %w", *id, err)
	}
	tSwitch, err := timed(func() error {
		return each(hosts, len(hosts), func(h *fdssh.Host) error {
			return h.Switch(ctx, engine.SwitchInfo{Release: *id, Actor: "bench"})
		})
	})
	if err != nil {
		return fmt.Errorf("switch to %s: %w", *id, err)
	}
	fmt.Printf("flightdeck push: manifest %d ms, connect %d ms, prepare %d ms (%.1f MB sent), switch %d ms, in all %d ms\n",
		tManifest.Milliseconds(), tConnect.Milliseconds(), tPrepare.Milliseconds(), float64(sent)/1e6,
		tSwitch.Milliseconds(), time.Since(start).Milliseconds())
	return nil
}

// verify checks on every host (the servers share this machine's file
// system) that subdir/current points at releases/<id> and that this
// release holds every file of the tree with the same bytes; with -remove it
// then deletes subdir so that the next run deploys cold again.
func verify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ExitOnError)
	cluster := fs.String("cluster", "", "cluster.json written by fleet serve")
	dir := fs.String("release", "", "release tree written by fleet release")
	id := fs.String("id", "r1", "release id")
	subdir := fs.String("subdir", "", "deploy_to below each server's deploy directory")
	remove := fs.Bool("remove", false, "delete subdir on every host after checking")
	_ = fs.Parse(args)
	if *dir == "" || *subdir == "" {
		return fmt.Errorf("-release and -subdir are required")
	}
	cf, err := readCluster(*cluster)
	if err != nil {
		return err
	}
	want, err := readTree(*dir)
	if err != nil {
		return err
	}
	var firstErr error
	for _, d := range cf.DeployTo {
		root := filepath.Join(d, *subdir)
		if err := checkHost(root, *id, want); err != nil && firstErr == nil {
			firstErr = err
		}
		if *remove {
			if err := os.RemoveAll(root); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("remove %s: %w", root, err)
			}
		}
	}
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("verified %d hosts: current -> releases/%s, %d files identical\n", len(cf.DeployTo), *id, len(want))
	return nil
}

// readTree returns every regular file below dir by relative path.
func readTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read release tree %s: %w", dir, err)
	}
	return files, nil
}

func checkHost(root, id string, want map[string][]byte) error {
	target, err := os.Readlink(filepath.Join(root, "current"))
	if err != nil {
		return fmt.Errorf("host %s: %w", root, err)
	}
	if target != filepath.Join("releases", id) && target != filepath.Join(root, "releases", id) {
		return fmt.Errorf("host %s: current -> %s, want releases/%s", root, target, id)
	}
	rel := filepath.Join(root, "releases", id)
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(rel, name))
		if err != nil {
			return fmt.Errorf("host %s: %w", root, err)
		}
		if !bytes.Equal(got, b) {
			return fmt.Errorf("host %s: %s differs from the release", root, name)
		}
	}
	return nil
}
