// Package lab runs a fleet of local containers, each a host with its own
// address and hostname, a real OpenSSH server and the demo service, so that
// releases can be rehearsed over the same SSH path as production and real
// faults (a killed, hung, partitioned, slow or rebooted host) can be
// practised on.
//
// It talks to the Docker Engine through its official Go SDK
// (github.com/moby/moby/client) with API version negotiation; DOCKER_HOST
// is honoured, so Podman's Docker-compatible socket works too. No registry
// is needed: the lab's image is made here from files this machine has
// (busybox, sshd, tc and the shared libraries their ELF headers name),
// imported as a one-layer image and cached under the hash of its inputs.
// The flightdeck binary itself is not in the image: each lab keeps a copy
// in its directory and mounts it read-only, so rebuilding flightdeck does
// not rebuild the image.
//
// Every object a lab creates (containers, their volumes, the network)
// carries the label flightdeck.lab=NAME; Down removes exactly those and the
// lab's directory (its SSH key, known_hosts and plan snippet). The engine
// does not import this package: the demo fleet and the command line do.
package lab
