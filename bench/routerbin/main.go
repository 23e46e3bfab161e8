// Command routerbin runs the built-in router for bench/router.sh until the
// `flightdeck router` command exists: it calls router.Run as that command
// will.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"flightdeck/targets/router"
)

func main() {
	var cfg router.Config
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:18090", "proxy listen address")
	flag.StringVar(&cfg.Admin, "admin", router.DefaultAdminAddr, "admin API listen address")
	flag.StringVar(&cfg.StateFile, "state", "router.json", "state file")
	flag.StringVar(&cfg.TokenFile, "token-file", "", "admin token file (default: router.token next to the state file)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := router.Run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}
