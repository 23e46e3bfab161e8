package lab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"

	gossh "golang.org/x/crypto/ssh"
)

// keyPair is an ed25519 key in OpenSSH's formats.
type keyPair struct {
	private []byte // OpenSSH PEM, unencrypted
	public  gossh.PublicKey
}

func newKeyPair(comment string) (keyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate an ed25519 key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return keyPair{}, fmt.Errorf("encode an ed25519 key: %w", err)
	}
	sp, err := gossh.NewPublicKey(pub)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{private: pem.EncodeToMemory(block), public: sp}, nil
}

// authorizedLine is the key as an authorized_keys (or .pub) line.
func (k keyPair) authorizedLine(comment string) []byte {
	line := gossh.MarshalAuthorizedKey(k.public) // ends with \n
	if comment != "" {
		line = append(line[:len(line)-1], []byte(" "+comment+"\n")...)
	}
	return line
}

// loadSigner reads the lab's private key.
func loadSigner(file string) (gossh.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the lab's SSH key: %w", err)
	}
	s, err := gossh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("the lab's SSH key %s: %w", file, err)
	}
	return s, nil
}
