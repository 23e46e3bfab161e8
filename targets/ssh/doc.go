// Package ssh implements engine.Host for a server reached over SSH.
//
// A Pool owns one SSH connection per host for the whole run; every
// operation opens sessions or uses the connection's single SFTP client over
// it. Dials are bounded (OpenSSH drops unauthenticated connections beyond
// MaxStartups), connections are kept alive with keepalive@openssh.com
// requests, every remote operation runs under a timeout and a lost
// connection is redialled once before the host fails.
//
// Host keys are always verified against known_hosts. An unknown key is
// refused unless the operator trusts new keys explicitly; a changed key is
// refused always. Agent forwarding is never requested.
//
// The on-host layout and its rules are package layout's; this package
// implements the layout's file system over SFTP (and exec sessions for
// hashing, tar streams and syncfs). See README.md for the transfer modes
// and measured figures.
package ssh
