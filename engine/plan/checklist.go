package plan

import "strings"

// ChecklistItems are the production checklist's item ids, in order.
func ChecklistItems() []string {
	return []string{"health_503", "graceful_shutdown", "draining", "migrations", "cache_namespace", "idempotent_jobs", "auto_rollback", "smoke"}
}

// checklist validates the smoke checks and the checklist block.
func (v *validator) checklist(p *Plan) {
	for i, sc := range p.Smoke {
		at := v.at(child("smoke", i))
		switch {
		case sc.URL == "" && strings.TrimSpace(sc.Run) == "":
			v.errorf(at, `a smoke check needs a url (url: "http://{backend}/", status: 200, body: "ok") or a command (run: ./smoke.sh)`)
		case sc.URL != "" && sc.Run != "":
			v.errorf(at, "a smoke check is a url or a command, not both")
		case sc.URL != "" && !strings.Contains(sc.URL, "{"):
			v.httpURL(child("smoke", i, "url"), sc.URL)
		}
		if sc.Status != 0 && (sc.Status < 100 || sc.Status > 599) {
			v.errorf(v.at(child("smoke", i, "status")), "status must be an HTTP status from 100 to 599, got %d", sc.Status)
		}
		v.positive(child("smoke", i), "timeout", sc.Timeout)
	}
	if c := p.Checklist; c != nil {
		known := ChecklistItems()
		for i, id := range c.Required {
			ok := false
			for _, k := range known {
				ok = ok || k == id
			}
			if !ok {
				v.unknownAt(v.at(child("checklist", "required", i)), id, "checklist item", "in checklist.required", known)
			}
		}
	}
}
