package nginx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"flightdeck/targets/pools"
)

// MaxWeight is the weight the busiest server gets; the others get theirs
// in proportion (1 at least).
const MaxWeight = 100

// stateMark starts the comment line of the upstream file that holds the
// routing state: the file is the adapter's only memory.
const stateMark = "# flightdeck-state: "

// CohortSuffix names the upstream A/B cohorts are sent to.
const CohortSuffix = "_cohort"

// Variable is the nginx variable the map file sets to the upstream a
// request goes to: proxy_pass http://$flightdeck_UPSTREAM.
func Variable(upstream string) string { return "flightdeck_" + upstream }

// renderUpstream writes the upstream file for state st: the state as a
// comment, then the upstream block (and the cohort upstream when
// cohorts is set). Backends in no pool are left out.
func renderUpstream(st *pools.State, upstream, env string, cohorts bool) ([]byte, error) {
	js, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by flightdeck (environment %s): every change rewrites this file, then\n", env)
	fmt.Fprintf(&b, "# runs nginx -t and reloads nginx. Do not edit it by hand.\n")
	fmt.Fprintf(&b, "%s%s\n", stateMark, js)
	block := func(name string, cohort bool) {
		targets := st.Targets(nil, cohort, nil)
		weights := pools.Scale(targets, MaxWeight)
		fmt.Fprintf(&b, "upstream %s {\n", name)
		addrs := st.Addrs()
		if len(addrs) == 0 {
			// nginx refuses an upstream without servers.
			fmt.Fprintf(&b, "    server 127.0.0.1:9 down; # no backend yet\n")
		}
		for _, a := range addrs {
			t := targets[a]
			rel := st.ReleaseOf(a)
			switch t.Placement {
			case pools.Serving:
				fmt.Fprintf(&b, "    server %s weight=%d; # %s, %.4g%% of traffic\n", a, weights[a], rel, t.Share)
			case pools.Warm:
				fmt.Fprintf(&b, "    server %s backup; # %s, warm\n", a, rel)
			case pools.Drained:
				fmt.Fprintf(&b, "    server %s down; # %s, drained\n", a, rel)
			}
		}
		fmt.Fprintf(&b, "    keepalive 32;\n}\n")
	}
	block(upstream, false)
	if cohorts {
		block(upstream+CohortSuffix, true)
	}
	return b.Bytes(), nil
}

// parseState reads the routing state back from an upstream file; a file
// flightdeck did not write yet is an empty state.
func parseState(data []byte) (*pools.State, error) {
	st := &pools.State{Pools: map[string][]string{}}
	for _, l := range strings.Split(string(data), "\n") {
		if js, ok := strings.CutPrefix(l, stateMark); ok {
			if err := json.Unmarshal([]byte(js), st); err != nil {
				return nil, fmt.Errorf("the state line of the upstream file: %w", err)
			}
			if st.Pools == nil {
				st.Pools = map[string][]string{}
			}
			return st, nil
		}
	}
	return st, nil
}

// renderMap writes the cohort map include: it sets $flightdeck_UPSTREAM
// to the cohort upstream for the cohort's requests and to the upstream
// for everyone else.
func renderMap(st *pools.State, upstream, env string) []byte {
	v := "$" + Variable(upstream)
	cohort := upstream + CohortSuffix
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by flightdeck (environment %s): the A/B cohort. Do not edit it by hand.\n", env)
	rules := st.Cohorts
	if len(rules) == 0 || len(st.Pools[rules[0].Release]) == 0 {
		fmt.Fprintf(&b, "map $host %s {\n    default %s;\n}\n", v, upstream)
		return b.Bytes()
	}
	r := rules[0]
	src := "$cookie_" + r.Cookie
	if r.Header != "" {
		src = "$http_" + strings.ReplaceAll(strings.ToLower(r.Header), "-", "_")
	}
	if r.Value != "" {
		fmt.Fprintf(&b, "map %s %s {\n    default %s;\n", src, v, upstream)
		for _, rule := range rules {
			fmt.Fprintf(&b, "    %s %s;\n", mapKey(rule.Value), cohort)
		}
		fmt.Fprintf(&b, "}\n")
		return b.Bytes()
	}
	// A stable share of users: split_clients hashes the user key; users
	// without one stay on the upstream.
	split := v + "_split"
	fmt.Fprintf(&b, "split_clients \"%s\" %s {\n    %g%% %s;\n    * %s;\n}\n", src, split, r.Percent, cohort, upstream)
	fmt.Fprintf(&b, "map %s %s {\n    \"\" %s;\n    default %s;\n}\n", src, v, upstream, split)
	return b.Bytes()
}

// quote writes s as an nginx string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`).Replace(s) + `"`
}

// mapKey writes a value a map matches literally: a value that would read
// as a regular expression (~) or a map parameter is escaped with \.
func mapKey(v string) string {
	q := quote(v)
	if strings.HasPrefix(v, "~") || slices.Contains([]string{"default", "hostnames", "include", "volatile"}, v) {
		q = `"\` + q[1:]
	}
	return q
}

// checkCohortValues refuses values nginx cannot hold in a map.
func checkCohortValues(st *pools.State) error {
	for _, r := range st.Cohorts {
		if strings.ContainsAny(r.Value, "\n\r") {
			return fmt.Errorf("cohort value %q holds a line break", r.Value)
		}
	}
	return nil
}
