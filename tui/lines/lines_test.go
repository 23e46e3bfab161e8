package lines

import (
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestRunStartedNamesTheTrafficLayer: a deploy's first line says which
// traffic layer the run moves traffic through, whatever its kind.
func TestRunStartedNamesTheTrafficLayer(t *testing.T) {
	for _, tc := range []struct {
		at, want string
	}{
		{"HAProxy backend app at /run/haproxy/admin.sock", "; traffic through HAProxy backend app at /run/haproxy/admin.sock"},
		{"nginx upstream shop in /etc/nginx/fd/shop.conf", "; traffic through nginx upstream shop in /etc/nginx/fd/shop.conf"},
		{"router at http://127.0.0.1:9180", "; traffic through router at http://127.0.0.1:9180"},
		{"", "steps 5% → 100%"}, // no traffic layer: nothing said
	} {
		line := Format(engine.Event{Type: engine.EvRunStarted, Run: "r", Time: time.Unix(0, 0), Start: &engine.RunInfo{
			Kind: engine.KindDeploy, App: "shop", Env: "prod", Strategy: "canary", Release: "v2", Steps: []int{5, 100},
			TrafficAt: tc.at}})
		if !strings.HasSuffix(line, tc.want) {
			t.Errorf("traffic %q: line %q does not end with %q", tc.at, line, tc.want)
		}
	}
}
