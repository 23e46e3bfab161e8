package router

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Run is what `flightdeck router --listen ADDR --admin ADDR --state FILE`
// calls: it creates the router, listens on cfg.Listen (proxy) and
// cfg.Admin (admin API, loopback by default), serves until ctx is
// cancelled, then shuts down gracefully: listeners close, in-flight
// requests get up to cfg.DrainTimeout to finish, health checkers stop.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Listen == "" {
		return errors.New("router: listen address is required")
	}
	r, err := New(cfg)
	if err != nil {
		return err
	}
	cfg = r.cfg
	var lc net.ListenConfig
	proxyLn, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		r.Close()
		return fmt.Errorf("router: listening on %s: %w", cfg.Listen, err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", cfg.Admin)
	if err != nil {
		proxyLn.Close()
		r.Close()
		return fmt.Errorf("router: admin listening on %s: %w", cfg.Admin, err)
	}
	if host, _, _ := net.SplitHostPort(adminLn.Addr().String()); !net.ParseIP(host).IsLoopback() {
		r.log.Warn("router admin API listens beyond loopback; it is token-protected but /metrics is open unless MetricsAuth is set", "admin", adminLn.Addr().String())
	}
	r.Start(proxyLn, adminLn)
	r.log.Info("router serving", "listen", proxyLn.Addr().String(), "admin", adminLn.Addr().String(),
		"state", cfg.StateFile, "token_file", cfg.TokenFile)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		return fmt.Errorf("router: graceful shutdown: %w", err)
	}
	return nil
}
