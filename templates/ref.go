package templates

import (
	"crypto/sha256"
	"encoding/binary"
)

// crockford is Crockford's base-32 alphabet: no I, L, O or U, so a reference read aloud or copied by hand is
// not mistaken for another.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Ref is the short reference a person reads for a request ("R-7KQ2-M4"): 30 bits of SHA-256 of the id, so
// the same id always gives the same reference. It names a request among a person's own, on a page or a phone
// call; tools keep using the full id.
func Ref(id string) string {
	sum := sha256.Sum256([]byte(id))
	n := binary.BigEndian.Uint32(sum[:4]) >> 2
	var b [6]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = crockford[n&31]
		n >>= 5
	}
	return "R-" + string(b[:4]) + "-" + string(b[4:])
}
