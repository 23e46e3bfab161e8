package nginx

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// worker is one child process of the nginx master.
type worker struct {
	pid          int
	shuttingDown bool // "nginx: worker process is shutting down"
}

// masterPID reads the nginx master's pid file.
func masterPID(pidFile string) (int, error) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("nginx pid file: %w (set router.pid_file to the pid directive of nginx.conf)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("nginx pid file %s holds %q, not a pid", pidFile, strings.TrimSpace(string(data)))
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
		return 0, fmt.Errorf("nginx pid file %s names pid %d, which is not running", pidFile, pid)
	}
	return pid, nil
}

// workers lists the worker processes of master (cache managers left out).
func workers(master int) ([]worker, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []worker
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(master) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		title := strings.TrimRight(strings.ReplaceAll(string(cmd), "\x00", " "), " ")
		if !strings.Contains(title, "worker process") {
			continue
		}
		out = append(out, worker{pid: pid, shuttingDown: strings.Contains(title, "shutting down")})
	}
	return out, nil
}
