package router

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"testing"
	"time"
)

// FuzzParseState feeds arbitrary bytes to the state file loader: it must
// not panic, and a state it accepts must be valid and survive being saved
// and loaded again unchanged. Run for longer with
//
//	go test -run '^$' -fuzz FuzzParseState -fuzztime 1m ./targets/router/
func FuzzParseState(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"route":{"stable":"blue","candidate":"green","weight":10},"cohorts":[{"release":"green","header":"X-Beta","value":"1"}],"pools":{"blue":["127.0.0.1:8081"],"green":["127.0.0.1:8082"]},"drained":["127.0.0.1:8082"]}`,
		`{"version":1,"pools":{}}`,
		`{"version":1}}`,
		`null`,
		`{"version":2}`,
		`{"version":1,"pools":{"a":["h:1","h:1"]}}`,
		`{"version":1,"route":{"stable":"a","weight":"NaN"},"pools":{"a":[]}}`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState("state.json", data)
		if err != nil {
			return
		}
		if err := st.validate(); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
		path := dir + "/round.json"
		if err := saveState(path, st); err != nil {
			t.Fatal(err)
		}
		again, err := loadState(path)
		if err != nil {
			t.Fatalf("a saved state does not load: %v", err)
		}
		if !reflect.DeepEqual(normalState(st), normalState(again)) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st, again)
		}
	})
}

// normalState makes nil and empty slices compare equal.
func normalState(st *state) string {
	b, _ := json.Marshal(st)
	var m any
	json.Unmarshal(b, &m)
	b, _ = json.Marshal(m)
	return string(bytes.ReplaceAll(b, []byte("null"), []byte("[]")))
}

// FuzzAdminHandlers sends arbitrary bodies to the admin API's changing
// endpoints of one router: whatever the input, the answer is JSON with a
// status the API documents, and the router's state (in memory and on
// disk) stays valid and loadable. Run for longer with
//
//	go test -run '^$' -fuzz FuzzAdminHandlers -fuzztime 1m ./targets/router/
func FuzzAdminHandlers(f *testing.F) {
	for _, seed := range []struct {
		ep   uint8
		name string
		body string
	}{
		{0, "blue", `{"backends":["127.0.0.1:1"]}`},
		{0, "green", `{"backends":["127.0.0.1:2","127.0.0.1:3"]}`},
		{1, "", `{"stable":"blue","candidate":"green","weight":12.5,"sticky_cookie":"sid"}`},
		{2, "", `[{"release":"green","header":"X-Beta","value":"1"},{"release":"blue","cookie":"c","percent":50}]`},
		{3, "green", ``},
		{4, "127.0.0.1:2", ``},
		{5, "127.0.0.1:2", ``},
		{1, "", `null`},
		{2, "", `[]]`},
		{0, "..", `{"backends":[]}`},
	} {
		f.Add(seed.ep, seed.name, []byte(seed.body))
	}
	cfg := Config{
		StateFile:      f.TempDir() + "/router.json",
		HealthInterval: time.Hour, // no checks: the fuzzer's addresses lead nowhere
		DrainTimeout:   10 * time.Millisecond,
		Logger:         discardLogger(),
	}
	r, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	h := r.AdminHandler()
	auth := "Bearer " + r.Token()
	f.Fuzz(func(t *testing.T, ep uint8, name string, body []byte) {
		var method, path string
		switch ep % 6 {
		case 0:
			method, path = http.MethodPut, "/v1/pools/"+name
		case 1:
			method, path = http.MethodPut, "/v1/route"
		case 2:
			method, path = http.MethodPut, "/v1/cohorts"
		case 3:
			method, path = http.MethodDelete, "/v1/pools/"+name
		case 4:
			method, path = http.MethodPost, "/v1/backends/"+name+"/drain?timeout=1ms"
		case 5:
			method, path = http.MethodPost, "/v1/backends/"+name+"/undrain"
		}
		req, err := http.NewRequest(method, "http://admin"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request line a client could send
		}
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: answer is not JSON: %q", method, path, rec.Body.Bytes())
			}
		case http.StatusNotFound, http.StatusMethodNotAllowed, // the handler's, or the mux's for a path it does not route
			http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect: // the mux cleaning "..", "//"
		default:
			t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body.Bytes())
		}
		r.mu.Lock()
		err = r.st.validate()
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("%s %s %q left an invalid state: %v", method, path, body, err)
		}
		if _, err := os.Stat(cfg.StateFile); err == nil {
			if _, err := loadState(cfg.StateFile); err != nil {
				t.Fatalf("%s %s %q left a state file that does not load: %v", method, path, body, err)
			}
		}
	})
}
