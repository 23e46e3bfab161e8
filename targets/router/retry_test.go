package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/proctest"
)

// backendProcEnv makes the test binary run TestBackendProcessHelper as a
// backend process named by the variable's value.
const backendProcEnv = "FLIGHTDECK_ROUTER_TEST_BACKEND"

// TestBackendProcessHelper is not a test: run by backendProcess in a
// process of its own, it serves HTTP on a loopback port (printed first on
// stdout) until it is killed: /healthz answers 200, anything else its
// name, a colon and the request body.
func TestBackendProcessHelper(t *testing.T) {
	name := os.Getenv(backendProcEnv)
	if name == "" {
		t.Skip("runs only as a backend process of another test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == DefaultHealthPath {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, name+":")
		w.Write(body)
	}))
	os.Exit(1)
}

// procBackend is a backend in a process of its own, so that a test can
// stop and kill it as a host's service dies.
type procBackend struct {
	name, addr string
	cmd        *exec.Cmd
	exited     chan struct{}
}

func backendProcess(t *testing.T, name string) *procBackend {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBackendProcessHelper$")
	cmd.Env = append(os.Environ(), backendProcEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pb := &procBackend{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(pb.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-pb.exited
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "127.0.0.1:") {
		t.Fatalf("backend process %s: %q %v", name, line, err)
	}
	pb.addr = strings.TrimSpace(line)
	return pb
}

// kill kills the process and waits until it is gone (its sockets closed).
func (pb *procBackend) kill(t *testing.T) {
	t.Helper()
	if err := pb.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-pb.exited
}

// TestPOSTsSurviveABackendDying: a backend process dies under a steady
// load of POSTs sent over kept-alive connections, and no client sees a
// failure. The dying backend first stops (SIGSTOP: a hung service whose
// kernel still accepts connections and bytes), so that requests are held
// in its sockets unread, as they are when a process is killed while they
// arrive; then it is killed (the router's health checks are too slow to
// notice, as they are in the first second of a real death). The requests
// it held were never read: the kernel resets their connections, and the
// router sends them, bodies kept, to the other backend. Every later
// request routed to it is refused and sent to the other backend too.
func TestPOSTsSurviveABackendDying(t *testing.T) {
	live, doomed := backendProcess(t, "live"), backendProcess(t, "doomed")
	cfg := testConfig(t)
	cfg.HealthInterval = time.Hour // only the first check: the router must not notice the death by itself
	tr := startRouter(t, cfg)
	ctx := ctxT(t)
	if err := tr.client.SetPool(ctx, "blue", []string{live.addr, doomed.addr}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{live.addr, doomed.addr} {
		if err := tr.client.WaitHealthy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.client.SetRoute(ctx, engine.Route{Stable: "blue"}); err != nil {
		t.Fatal(err)
	}

	const clients = 6
	var (
		failures     atomic.Int64
		firstFailure sync.Once
		failure      string
		served       sync.Map // backend name → *atomic.Int64
	)
	countFor := func(name string) *atomic.Int64 {
		v, _ := served.LoadOrStore(name, new(atomic.Int64))
		return v.(*atomic.Int64)
	}
	// post sends one POST through hc: bodies of known length and chunked
	// ones, from 1 byte to 48 KiB (under the default RetryBodyLimit).
	post := func(hc *http.Client, c, i int) {
		payload := strings.Repeat(fmt.Sprintf("c%d-%d;", c, i), 1+(i%4)*2000)
		var body io.Reader = strings.NewReader(payload)
		if i%2 == 1 {
			body = io.MultiReader(body) // no length known: sent chunked
		}
		fail := func(format string, args ...any) {
			failures.Add(1)
			firstFailure.Do(func() { failure = fmt.Sprintf(format, args...) })
		}
		resp, err := hc.Post(tr.proxyURL+"/echo", "text/plain", body)
		if err != nil {
			fail("client %d POST %d: %v", c, i, err)
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		name, echoed, _ := strings.Cut(string(got), ":")
		if err != nil || resp.StatusCode != http.StatusOK || echoed != payload {
			fail("client %d POST %d: %d %.60q %v", c, i, resp.StatusCode, got, err)
			return
		}
		countFor(name).Add(1)
	}
	// run makes each client send n POSTs in a row on its own kept-alive
	// connection to the router.
	hcs := make([]*http.Client, clients)
	for c := range hcs {
		hcs[c] = &http.Client{Transport: &http.Transport{Proxy: nil}}
		t.Cleanup(hcs[c].CloseIdleConnections)
	}
	var seq atomic.Int64
	run := func(n int, during func()) {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					post(hcs[c], c, int(seq.Add(1)))
				}
			}()
		}
		if during != nil {
			during()
		}
		wg.Wait()
	}

	// Both backends serve, and the router keeps connections to both.
	run(40, nil)
	if failures.Load() != 0 {
		t.Fatalf("%d POSTs failed before any backend died; first: %s", failures.Load(), failure)
	}
	if countFor("doomed").Load() == 0 || countFor("live").Load() == 0 {
		t.Fatalf("live served %d, doomed %d: both should have", countFor("live").Load(), countFor("doomed").Load())
	}
	if idle := len(idleConns(tr.r, doomed.addr)); idle == 0 {
		t.Fatal("the router kept no connection to the doomed backend")
	}

	// The doomed backend hangs while nothing is in flight (so that none
	// of its requests was read), every client ends up waiting on it, and
	// then it dies; the clients go on.
	// Freeze waits for every thread to stop: right after kill(2) the
	// backend can still read (and half answer) the next request.
	if err := proctest.Freeze(doomed.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	run(60, func() {
		waitFor(t, "every client to wait on the hung backend", func() bool {
			return backendStatus(t, tr.r, doomed.addr).InFlight == clients
		})
		doomed.kill(t)
	})
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d POSTs failed when a backend died; first: %s", n, seq.Load(), failure)
	}
	if s := tr.r.Stats()["blue"]; s.ConnErrors != 0 || s.Status2xx != uint64(seq.Load()) {
		t.Fatalf("stats %+v: want %d successes and no failed request", s, seq.Load())
	}
	if !scrapeHasPositive(t, tr, "flightdeck_router_connection_errors_total", doomed.addr) {
		t.Fatal("no connection error to the dead backend was counted: the test did not exercise a retry")
	}
}

// TestRetryRule: what the router sends again after a backend closed a
// kept-alive connection without answering, by what the backend's kernel
// says it read.
func TestRetryRule(t *testing.T) {
	// The backend answers the first request of its first connection,
	// then closes it as the second request arrives, unread: the
	// keep-alive race of a backend closing an idle connection (a graceful
	// restart, an idle timeout) just as the router reuses it. A socket
	// closed with unread bytes sends a reset.
	closeUnread := func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", closeUnread: conn == 1 && n == 1}
	}
	post := func(t *testing.T, url string, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}

	t.Run("a POST the backend did not read goes out again", func(t *testing.T) {
		sb := startScripted(t, closeUnread)
		tr := routeTo(t, testConfig(t), sb)
		for i := range 2 {
			if code, got := post(t, tr.proxyURL+"/", strings.Repeat("x", 40<<10)); code != 200 || got != "ok" {
				t.Fatalf("POST %d: %d %q", i, code, got)
			}
		}
		if sb.requests() != 2 || sb.conns.Load() != 2 {
			t.Errorf("backend read %d requests on %d connections, want 2 on 2", sb.requests(), sb.conns.Load())
		}
		sb.mu.Lock()
		defer sb.mu.Unlock()
		if len(sb.bodies[1]) != 40<<10 {
			t.Errorf("the POST sent again had a body of %d bytes, want %d", len(sb.bodies[1]), 40<<10)
		}
	})
	t.Run("not when its body was longer than the limit", func(t *testing.T) {
		sb := startScripted(t, closeUnread)
		tr := routeTo(t, testConfig(t), sb)
		if code, _ := post(t, tr.proxyURL+"/", "first"); code != 200 {
			t.Fatalf("first POST: %d", code)
		}
		if code, _ := post(t, tr.proxyURL+"/", strings.Repeat("x", DefaultRetryBodyLimit+1)); code != http.StatusBadGateway {
			t.Fatalf("second POST: %d, want 502: its body was not kept", code)
		}
		if sb.requests() != 1 {
			t.Errorf("backend read %d requests, want 1", sb.requests())
		}
	})
	t.Run("not when the backend read it", func(t *testing.T) {
		// It read the whole request, then closed: it may have acted on
		// it, so a POST is answered 502 rather than sent twice.
		sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
			if conn == 1 && n == 2 {
				return rawReply{close: true}
			}
			return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
		})
		tr := routeTo(t, testConfig(t), sb)
		if code, _ := post(t, tr.proxyURL+"/", "first"); code != 200 {
			t.Fatalf("first POST: %d", code)
		}
		if code, _ := post(t, tr.proxyURL+"/", "second"); code != http.StatusBadGateway {
			t.Fatalf("second POST: %d, want 502", code)
		}
		if sb.requests() != 2 {
			t.Errorf("backend read %d requests, want 2: the POST was sent again", sb.requests())
		}
	})
}
