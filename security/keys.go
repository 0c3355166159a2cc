package security

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// APIKeyPrefix starts every key, so that a key pasted where it should not
// be (a log, a ticket) is recognisable and can be searched for.
const APIKeyPrefix = "lsk_"

// NewAPIKey makes a key: 32 random bytes, base64url, after APIKeyPrefix.
// Only its digest is stored; the key itself is shown once.
func NewAPIKey() (key, digest string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Digest(key), nil
}

// Digest is the hex SHA-256 of a key as clients send it: what the keys
// file holds. A plain hash suffices: the key is 256 random bits, so there is
// nothing to guess that a slow hash would protect.
func Digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}
