//go:build linux && race

package router

// rawIO is off in race builds. The syscall package tells the race
// detector that bytes written to a socket happen before they are read
// (its Read and Write carry annotations), and raw system calls do not, so
// a test whose client and router share one process would see races that
// the kernel rules out. Race builds use the net package's reads and
// writes; .ci/run also runs this package's tests without -race, over the
// raw path.
const rawIO = false
