package haproxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ServerStat is one server row of "show stat".
type ServerStat struct {
	Backend, Name string
	Addr          string // ip:port
	Status        string // UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2", "no check", ...
	UWeight       int    // the weight set by configuration or the Runtime API
	Sessions      int64  // scur: requests being served right now
	Responses     [6]uint64
	ConnErrors    uint64 // econ: failed connections to the server
	RespErrors    uint64 // eresp: responses that failed (aborted, invalid)
	CheckStatus   string
}

// Requests is every request the server was sent: those it answered and
// those that failed on the way.
func (s ServerStat) Requests() uint64 {
	var n uint64
	for _, c := range s.Responses {
		n += c
	}
	return n + s.ConnErrors + s.RespErrors
}

// Up reports whether the server passes its health checks (or has none).
func (s ServerStat) Up() bool {
	return strings.HasPrefix(s.Status, "UP") || s.Status == "no check" || s.Status == "NOLB"
}

// BackendStat is one backend row of "show stat".
type BackendStat struct {
	Name string
	Algo string // roundrobin, static-rr, leastconn, ...
}

// parseStat reads the CSV of "show stat".
func parseStat(out string) ([]ServerStat, []BackendStat, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, nil, fmt.Errorf("show stat: unexpected answer %q", truncate(out, 200))
	}
	cols := map[string]int{}
	for i, name := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		cols[name] = i
	}
	for _, need := range []string{"pxname", "svname", "status", "scur", "hrsp_5xx", "econ", "eresp", "addr", "uweight"} {
		if _, ok := cols[need]; !ok {
			return nil, nil, fmt.Errorf("show stat: no %s column (HAProxy 2.4 or newer is needed)", need)
		}
	}
	var servers []ServerStat
	var backends []BackendStat
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		get := func(name string) string {
			if i, ok := cols[name]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		num := func(name string) uint64 {
			n, _ := strconv.ParseUint(get(name), 10, 64)
			return n
		}
		switch get("svname") {
		case "FRONTEND":
			continue
		case "BACKEND":
			backends = append(backends, BackendStat{Name: get("pxname"), Algo: get("algo")})
			continue
		}
		s := ServerStat{
			Backend: get("pxname"), Name: get("svname"), Addr: get("addr"), Status: get("status"),
			Sessions: int64(num("scur")), ConnErrors: num("econ"), RespErrors: num("eresp"),
			CheckStatus: get("check_status"),
		}
		s.UWeight, _ = strconv.Atoi(get("uweight"))
		s.Responses = [6]uint64{num("hrsp_other"), num("hrsp_1xx"), num("hrsp_2xx"), num("hrsp_3xx"), num("hrsp_4xx"), num("hrsp_5xx")}
		servers = append(servers, s)
	}
	return servers, backends, nil
}

// Admin state bits of "show servers state" (srv_admin_state).
const (
	admMaint = 0x01 | 0x02 | 0x20 // forced, inherited, resolution
	admDrain = 0x08 | 0x10        // forced, inherited
	// chkConfigured is srv_check_state's "a health check is configured".
	chkConfigured = 0x02
)

// ServerState is one line of "show servers state".
type ServerState struct {
	Backend, Name string
	Addr, FQDN    string
	Port          string
	Admin         int
	UWeight       int
	CheckState    int
}

// Maint reports whether the server is in maintenance.
func (s ServerState) Maint() bool { return s.Admin&admMaint != 0 }

// Drain reports whether the server is draining.
func (s ServerState) Drain() bool { return s.Admin&admDrain != 0 }

// Checked reports whether the server has a health check configured.
func (s ServerState) Checked() bool { return s.CheckState&chkConfigured != 0 }

// Addrs are the addresses a plan may name the server by: ip:port and,
// when it was configured by name, fqdn:port.
func (s ServerState) Addrs() []string {
	out := []string{net.JoinHostPort(s.Addr, s.Port)}
	if s.FQDN != "" && s.FQDN != "-" {
		out = append(out, net.JoinHostPort(s.FQDN, s.Port))
	}
	return out
}

// parseServersState reads "show servers state [BACKEND]".
func parseServersState(out string) ([]ServerState, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("show servers state: %s", strings.TrimSpace(truncate(out, 200)))
	}
	cols := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		cols[name] = i
	}
	for _, need := range []string{"be_name", "srv_name", "srv_addr", "srv_admin_state", "srv_uweight", "srv_check_state", "srv_port", "srv_fqdn"} {
		if _, ok := cols[need]; !ok {
			return nil, fmt.Errorf("show servers state: no %s column", need)
		}
	}
	var out2 []ServerState
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		get := func(name string) string {
			if i := cols[name]; i < len(f) {
				return f[i]
			}
			return ""
		}
		atoi := func(name string) int {
			n, _ := strconv.Atoi(get(name))
			return n
		}
		out2 = append(out2, ServerState{
			Backend: get("be_name"), Name: get("srv_name"), Addr: get("srv_addr"), FQDN: get("srv_fqdn"),
			Port: get("srv_port"), Admin: atoi("srv_admin_state"), UWeight: atoi("srv_uweight"),
			CheckState: atoi("srv_check_state"),
		})
	}
	return out2, nil
}

// Identity tells one HAProxy process from the next: a reload or restart
// starts a new one, which has forgotten every runtime change.
type Identity struct {
	PID   int   `json:"pid"`
	Start int64 `json:"start"` // Start_time_sec
}

func (id Identity) String() string { return fmt.Sprintf("pid %d", id.PID) }

// parseInfo reads the process identity from "show info".
func parseInfo(out string) (Identity, error) {
	var id Identity
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Pid":
			id.PID, _ = strconv.Atoi(v)
		case "Start_time_sec":
			id.Start, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if id.PID == 0 {
		return id, fmt.Errorf("show info: no Pid in %q", truncate(out, 200))
	}
	return id, nil
}
