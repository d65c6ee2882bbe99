package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeyLen is the length of SECRETS_KEY once decoded: an AES-256 key.
const KeyLen = 32

// sealVersion is the first byte of every sealed value, so that a later
// format can tell old values apart.
const sealVersion byte = 1

// errUnsealable: the value does not open under this key with this ID, which
// in practice means SECRETS_KEY changed (or the stored value was altered).
var errUnsealable = errors.New("sealed value does not open")

// sealer seals values with AES-256-GCM. The associated data is the value's
// ID, so a sealed value copied to another repository, environment or name
// does not open there.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("SECRETS_KEY is %d bytes, not %d: make one with `openssl rand -base64 32`", len(key), KeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal is version, a fresh random nonce, then the ciphertext with its tag.
func (s *sealer) seal(id ID, value string) []byte {
	n := s.aead.NonceSize()
	out := make([]byte, 1+n, 1+n+len(value)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+n]) // never fails (crypto/rand, Go 1.24+)
	return s.aead.Seal(out, out[1:1+n], []byte(value), id.associatedData())
}

func (s *sealer) open(id ID, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return "", errUnsealable
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], id.associatedData())
	if err != nil {
		return "", errUnsealable
	}
	return string(plain), nil
}
