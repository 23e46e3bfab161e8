//go:build linux && !race

package router

// rawIO: see rawio_race.go.
const rawIO = true
