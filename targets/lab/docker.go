package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// NoDaemonError says that no Docker Engine answered, what was tried and
// how to start one.
type NoDaemonError struct {
	// Host is the engine address tried (DOCKER_HOST, or the default socket).
	Host string
	// FromEnv is true when Host came from DOCKER_HOST.
	FromEnv bool
	Err     error
}

func (e *NoDaemonError) Error() string {
	where := "the default socket " + e.Host + " (DOCKER_HOST is not set)"
	if e.FromEnv {
		where = "DOCKER_HOST=" + e.Host
	}
	return fmt.Sprintf("no Docker Engine answers at %s: %v\n"+
		"  start one: `sudo systemctl start docker` (or run `dockerd` as root),\n"+
		"  or point DOCKER_HOST at another engine, e.g. Podman's compatible socket:\n"+
		"    systemctl --user start podman.socket; export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock\n"+
		"  nothing was created", where, e.Err)
}

func (e *NoDaemonError) Unwrap() error { return e.Err }

// Docker is a connection to the Docker Engine API.
type Docker struct {
	c *client.Client
	// Host is the engine's address.
	Host string
	// APIVersion is the negotiated API version.
	APIVersion string
	// Server names the engine (e.g. "Docker Engine 20.10.24").
	Server string
}

// pingTimeout bounds how long Connect waits for the engine to answer.
const pingTimeout = 5 * time.Second

// Connect reaches the engine named by DOCKER_HOST (or the default socket)
// and negotiates the API version. It returns a *NoDaemonError when
// nothing answers.
func Connect(ctx context.Context) (*Docker, error) {
	host, fromEnv := os.Getenv(client.EnvOverrideHost), true
	if host == "" {
		host, fromEnv = client.DefaultDockerHost, false
	}
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, &NoDaemonError{Host: host, FromEnv: fromEnv, Err: err}
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	ping, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &NoDaemonError{Host: host, FromEnv: fromEnv, Err: err}
	}
	d := &Docker{c: c, Host: host, APIVersion: c.ClientVersion()}
	if v, err := c.ServerVersion(pctx, client.ServerVersionOptions{}); err == nil {
		d.Server = strings.TrimSpace(v.Platform.Name + " " + v.Version)
	} else {
		d.Server = "API " + ping.APIVersion
	}
	return d, nil
}

// Close closes the connection.
func (d *Docker) Close() error { return d.c.Close() }

// Client is the SDK client, for what this package does not wrap.
func (d *Docker) Client() *client.Client { return d.c }

// isNotFound reports whether err is the engine's "no such object".
func isNotFound(err error) bool { return err != nil && cerrdefs.IsNotFound(err) }
