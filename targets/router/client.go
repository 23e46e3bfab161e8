package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"flightdeck/engine"
)

var (
	_ engine.Router         = (*Client)(nil)
	_ engine.BackendStatser = (*Client)(nil)
)

// ErrDrainTimeout is returned (wrapped) by Client.Drain when requests
// were still in flight when the timeout passed; the backend stays drained.
var ErrDrainTimeout = errors.New("drain timed out with requests in flight")

// Client drives a router through its admin API. It implements engine.Router.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// PollInterval is how often WaitHealthy polls; default 100 ms.
	PollInterval time.Duration
}

// NewClient returns a client for the admin API at adminURL (such as
// "http://127.0.0.1:9180") authenticating with token (see ReadToken).
func NewClient(adminURL, token string) (*Client, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("router admin URL %q: want http://host:port", adminURL)
	}
	if token == "" {
		return nil, errors.New("router admin token is empty")
	}
	return &Client{
		base:         strings.TrimRight(adminURL, "/"),
		token:        token,
		hc:           &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}},
		PollInterval: 100 * time.Millisecond,
	}, nil
}

// APIError is an error answer from the admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("router admin: %d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("router admin %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("router admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("router admin %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("%s %s: %w", method, path, &APIError{Status: resp.StatusCode, Message: eb.Error})
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("router admin %s %s: decoding answer: %w", method, path, err)
		}
	}
	return nil
}

// State returns the router's routing state.
func (c *Client) State(ctx context.Context) (engine.RouterState, error) {
	var st engine.RouterState
	err := c.do(ctx, http.MethodGet, "/v1/state", nil, &st)
	return st, err
}

// SetPool sets the backends of a release.
func (c *Client) SetPool(ctx context.Context, release string, addrs []string) error {
	if addrs == nil {
		addrs = []string{}
	}
	return c.do(ctx, http.MethodPut, "/v1/pools/"+url.PathEscape(release), PoolRequest{Backends: addrs}, nil)
}

// DeletePool removes a release's pool.
func (c *Client) DeletePool(ctx context.Context, release string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pools/"+url.PathEscape(release), nil, nil)
}

// SetRoute changes the stable/candidate split.
func (c *Client) SetRoute(ctx context.Context, r engine.Route) error {
	return c.do(ctx, http.MethodPut, "/v1/route", r, nil)
}

// SetCohorts replaces the cohort rules (nil drops them all).
func (c *Client) SetCohorts(ctx context.Context, rules []engine.CohortRule) error {
	if rules == nil {
		rules = []engine.CohortRule{}
	}
	return c.do(ctx, http.MethodPut, "/v1/cohorts", rules, nil)
}

// Drain takes addr out of rotation and waits until its in-flight requests
// finished (nil) or timeout passed (an error wrapping ErrDrainTimeout).
func (c *Client) Drain(ctx context.Context, addr string, timeout time.Duration) error {
	path := "/v1/backends/" + url.PathEscape(addr) + "/drain"
	if timeout > 0 {
		path += "?timeout=" + url.QueryEscape(timeout.String())
	}
	var res DrainResult
	if err := c.do(ctx, http.MethodPost, path, nil, &res); err != nil {
		return err
	}
	if !res.Drained {
		return fmt.Errorf("draining %s: %w (%d still in flight)", addr, ErrDrainTimeout, res.InFlight)
	}
	return nil
}

// Undrain puts a drained backend back into rotation after its health check.
func (c *Client) Undrain(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodPost, "/v1/backends/"+url.PathEscape(addr)+"/undrain", nil, nil)
}

// WaitHealthy polls the state until addr is healthy and not draining, or
// ctx ends. An address in no pool is an error at once.
func (c *Client) WaitHealthy(ctx context.Context, addr string) error {
	interval := c.PollInterval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		st, err := c.State(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s to be healthy: %w", addr, err)
		}
		found := false
		for _, b := range st.Backends {
			if b.Addr != addr {
				continue
			}
			found = true
			if b.Healthy && !b.Draining {
				return nil
			}
		}
		if !found {
			return fmt.Errorf("waiting for %s to be healthy: %w: it is in no pool", addr, ErrUnknownBackend)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be healthy: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stats returns cumulative per-release counters.
func (c *Client) Stats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	var out map[string]engine.ReleaseStats
	err := c.do(ctx, http.MethodGet, "/v1/stats", nil, &out)
	return out, err
}

// BackendStats returns cumulative counters per backend address.
func (c *Client) BackendStats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	var out map[string]engine.ReleaseStats
	err := c.do(ctx, http.MethodGet, "/v1/backend-stats", nil, &out)
	return out, err
}
