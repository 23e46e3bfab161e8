package router

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"flightdeck/engine"
)

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 1 << 20

// maxDrainTimeout bounds the timeout a drain request may ask for.
const maxDrainTimeout = 10 * time.Minute

// PoolRequest is the body of PUT /v1/pools/{release}.
type PoolRequest struct {
	Backends []string `json:"backends"`
}

// errorBody is every admin error's JSON body.
type errorBody struct {
	Error string `json:"error"`
}

// AdminHandler returns the admin API:
//
//	GET    /v1/state                       engine.RouterState
//	PUT    /v1/pools/{release}             {"backends":["host:port",...]}
//	DELETE /v1/pools/{release}
//	PUT    /v1/route                       engine.Route
//	PUT    /v1/cohorts                     [engine.CohortRule,...]
//	POST   /v1/backends/{addr}/drain?timeout=30s  → DrainResult
//	POST   /v1/backends/{addr}/undrain
//	GET    /v1/stats                       map[release]engine.ReleaseStats
//	GET    /v1/backend-stats               map[addr]engine.ReleaseStats
//	GET    /metrics                        Prometheus text format
//
// Every endpoint requires "Authorization: Bearer <token>" except /metrics
// unless Config.MetricsAuth is set. Errors are {"error": "..."} with 400
// (bad input; nothing changed), 401, 404 or 500.
func (r *Router) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.State())
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.Stats())
	})
	mux.HandleFunc("GET /v1/backend-stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.BackendStats())
	})
	mux.HandleFunc("PUT /v1/pools/{release}", func(w http.ResponseWriter, req *http.Request) {
		var body PoolRequest
		if !decodeJSON(w, req, &body) {
			return
		}
		r.respond(w, r.SetPool(req.PathValue("release"), body.Backends))
	})
	mux.HandleFunc("DELETE /v1/pools/{release}", func(w http.ResponseWriter, req *http.Request) {
		r.respond(w, r.DeletePool(req.PathValue("release")))
	})
	mux.HandleFunc("PUT /v1/route", func(w http.ResponseWriter, req *http.Request) {
		var body engine.Route
		if !decodeJSON(w, req, &body) {
			return
		}
		r.respond(w, r.SetRoute(body))
	})
	mux.HandleFunc("PUT /v1/cohorts", func(w http.ResponseWriter, req *http.Request) {
		var body []engine.CohortRule
		if !decodeJSON(w, req, &body) {
			return
		}
		r.respond(w, r.SetCohorts(body))
	})
	mux.HandleFunc("POST /v1/backends/{addr}/drain", func(w http.ResponseWriter, req *http.Request) {
		var timeout time.Duration
		if s := req.URL.Query().Get("timeout"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > maxDrainTimeout {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a duration such as 30s, above 0 and at most %v", s, maxDrainTimeout))
				return
			}
			timeout = d
		}
		res, err := r.Drain(req.Context(), req.PathValue("addr"), timeout)
		if err != nil {
			r.respond(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/backends/{addr}/undrain", func(w http.ResponseWriter, req *http.Request) {
		r.respond(w, r.Undrain(req.PathValue("addr")))
	})
	metrics := promhttp.HandlerFor(r.registry, promhttp.HandlerOpts{})
	if r.cfg.MetricsAuth {
		mux.Handle("GET /metrics", metrics)
	}
	authed := r.requireToken(mux)
	if r.cfg.MetricsAuth {
		return authed
	}
	outer := http.NewServeMux()
	outer.Handle("GET /metrics", metrics)
	outer.Handle("/", authed)
	return outer
}

// requireToken checks the bearer token in constant time (over fixed-size
// digests, so neither content nor length leaks through timing).
func (r *Router) requireToken(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(r.token))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flightdeck-router"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token from the router's token file>)")
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flightdeck-router", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		next.ServeHTTP(w, req)
	})
}

// respond maps an operation error to a status.
func (r *Router) respond(w http.ResponseWriter, err error) {
	var bad *badRequestError
	var nf *notFoundError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		r.log.Error("router admin change failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// decodeJSON reads exactly one JSON value with no unknown fields; on error
// it answers 400 and returns false.
func decodeJSON(w http.ResponseWriter, req *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxAdminBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return false
	}
	if err := decodeStrict(data, v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

// decodeStrict decodes data into v: exactly one JSON value, not null
// (which would leave v as it was and read as "clear everything"), with no
// unknown fields and nothing but white space after it.
func decodeStrict(data []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return errors.New("null is not a valid value here")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Decoder.More reports false at a closing bracket, so a stray "}" or
	// "]" would pass it: the rest must be white space.
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}
