package runtime

import (
	"bytes"
	"crypto/md5"
	"errors"
)

// Dragonboat keeps small records (its data directory's status, a
// snapshot's metadata) as flag files: the last 8 bytes of the body's MD5,
// then the body. Backup and restore read and write a snapshot's; the
// data-directory check reads the directory's.

var (
	errFlagShort  = errors.New("too short for a flag file")
	errFlagDigest = errors.New("does not match its digest")
)

// flagBody checks a flag file's bytes and answers its body: errFlagShort
// or errFlagDigest when they do not check out.
func flagBody(b []byte) ([]byte, error) {
	if len(b) < 8 {
		return nil, errFlagShort
	}
	sum := md5.Sum(b[8:])
	if !bytes.Equal(b[:8], sum[8:]) {
		return nil, errFlagDigest
	}
	return b[8:], nil
}

// flagFile is the flag file of body, as flagBody reads it.
func flagFile(body []byte) []byte {
	sum := md5.Sum(body)
	return append(sum[8:], body...)
}
