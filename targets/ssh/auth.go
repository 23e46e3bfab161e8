package ssh

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authMethods returns the public key authentication for t and a closer
// for the agent connection (to close once authenticated). Keys come from
// the explicit identity file alone, or else from the ssh-agent and the
// identity files that exist. The agent is only used to sign: it is never
// forwarded. warn is told of an identity file that others can read.
func authMethods(t Target, warn func(string)) ([]gossh.AuthMethod, io.Closer, error) {
	var signers []gossh.Signer
	var skipped []string
	for _, f := range t.IdentityFiles {
		s, err := loadKey(f, warn)
		switch {
		case err == nil:
			signers = append(signers, s)
		case t.ExplicitIdentity:
			return nil, nil, err
		case errors.Is(err, os.ErrNotExist):
		default:
			skipped = append(skipped, err.Error())
		}
	}
	var closer io.Closer = nopCloser{}
	var agentSigners func() ([]gossh.Signer, error)
	if !t.ExplicitIdentity && t.AgentSocket != "" {
		if c, err := net.Dial("unix", t.AgentSocket); err == nil {
			closer = c
			agentSigners = agent.NewClient(c).Signers
		}
	}
	if len(signers) == 0 && agentSigners == nil {
		msg := "no SSH key: set ssh.identity_file, start ssh-agent, or create ~/.ssh/id_ed25519"
		for _, s := range skipped {
			msg += "; " + s
		}
		return nil, nil, errors.New(msg)
	}
	cb := func() ([]gossh.Signer, error) {
		var all []gossh.Signer
		if agentSigners != nil {
			if as, err := agentSigners(); err == nil {
				all = append(all, as...)
			}
		}
		return append(all, signers...), nil
	}
	return []gossh.AuthMethod{gossh.PublicKeysCallback(cb)}, closer, nil
}

// loadKey reads a private key. One that group or others may read is
// still used (refusing it would stop a deploy that worked yesterday), but
// warn is told, as OpenSSH warns of it (and then ignores the key).
func loadKey(path string, warn func(string)) (gossh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && warn != nil {
		warn(fmt.Sprintf("identity file %s is accessible by others (mode %04o): OpenSSH refuses such a private key; chmod 600 %s", path, fi.Mode().Perm(), path))
	}
	s, err := gossh.ParsePrivateKey(b)
	var pm *gossh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("identity file %s is protected by a passphrase: add it to ssh-agent (ssh-add %s)", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
