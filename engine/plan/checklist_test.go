package plan

import (
	"strings"
	"testing"
)

func TestChecklistAndSmokeValidation(t *testing.T) {
	base := "app: shop\nsource: ./build\n"
	env := "environments:\n  p:\n    hosts: [{name: a, local: /a}]\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"valid", base + "smoke:\n  - {url: 'http://{backend}/', status: 200, body: ok}\n  - {run: ./smoke.sh}\nchecklist: {required: [smoke, idempotent_jobs]}\nmigrations: [db/*.sql]\ncache_namespace_env: CACHE_NS\n" + env, ""},
		{"smoke needs url or run", base + "smoke:\n  - {status: 200}\n" + env, "4:5: a smoke check needs a url"},
		{"not both", base + "smoke:\n  - {url: 'http://x/', run: ./s}\n" + env, "4:5: a smoke check is a url or a command, not both"},
		{"bad status", base + "smoke:\n  - {url: 'http://x/', status: 42}\n" + env, "4:32: status must be an HTTP status"},
		{"unknown item", base + "checklist: {required: [smoek]}\n" + env, `3:24: unknown checklist item "smoek"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("flightdeck.yaml", []byte(tt.yaml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want == "":
				if len(p.Smoke) != 2 || p.Checklist.Required[0] != "smoke" || p.CacheNamespaceEnv != "CACHE_NS" || p.Migrations[0] != "db/*.sql" {
					t.Fatalf("decoded %+v", p)
				}
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
