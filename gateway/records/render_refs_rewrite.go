package records

import (
	"bytes"
	"encoding/binary"
	"slices"
	"unicode/utf8"
)

// rewrite is selfContained's fast path: the references of a stored resource rewritten on its bytes, in one
// pass, without decoding it into a tree and encoding it twice (the tree path was the largest cost of a
// retrieval on PostgreSQL). A stored resource is Canonical's output, so the tree path's result is the stored
// bytes except for each changed Reference object: the same bytes where nothing changes, the object's own
// bytes as its original (it is canonical too), and the object with its "reference" replaced or removed.
//
// It gives exactly what the tree path gives, or ok false (the caller then takes the tree path): it checks, as
// it reads, that the bytes are what Canonical writes (no whitespace, members sorted and unique, strings and
// numbers in their canonical spelling), and leaves to the tree path what it does not handle (a name or a
// reference spelt with escapes, a change at the root or in an object with a "resourceType" member, where
// Canonical orders members otherwise). An unchanged resource comes back as resource; a changed one, and the
// originals, in buffers of b reused by the next call.
func (b *bundleTargets) rewrite(resource []byte) (res []byte, originals []string, ok bool) {
	if len(resource) == 0 || resource[0] != '{' {
		return nil, nil, false
	}
	r := &b.rewriter
	*r = rewriter{b: b, in: resource, out: r.out[:0], pointer: r.pointer[:0], originals: r.originals[:0]}
	end, ok := r.value(0)
	if !ok || end != len(resource) {
		return nil, nil, false
	}
	if len(r.originals) == 0 {
		return resource, nil, true
	}
	r.flush(len(resource))
	return r.out, r.originals, true
}

// rewriter is the state of one rewrite: out holds in[:done] as rewritten, the rest of in up to the point read
// is still to be copied as is.
type rewriter struct {
	b         *bundleTargets
	in, out   []byte
	done      int
	pointer   []byte // the JSON pointer of the value being read
	originals []string
	depth     int
}

// maxRewriteDepth bounds the recursion; deeper resources (none in practice) take the tree path.
const maxRewriteDepth = 1000

func (r *rewriter) flush(upTo int) {
	r.out = append(r.out, r.in[r.done:upTo]...)
	r.done = upTo
}

// value reads the value at i and returns where it ends.
func (r *rewriter) value(i int) (int, bool) {
	if i >= len(r.in) {
		return 0, false
	}
	switch c := r.in[i]; {
	case c == '{':
		return r.object(i)
	case c == '[':
		return r.array(i)
	case c == '"':
		end, _, ok := r.str(i)
		return end, ok
	case c == '-' || c >= '0' && c <= '9':
		return r.number(i)
	case c == 't':
		return r.literal(i, "true")
	case c == 'f':
		return r.literal(i, "false")
	case c == 'n':
		return r.literal(i, "null")
	}
	return 0, false
}

func (r *rewriter) literal(i int, lit string) (int, bool) {
	if !bytes.HasPrefix(r.in[i:], []byte(lit)) {
		return 0, false
	}
	return i + len(lit), true
}

// number reads a JSON number (kept as written by Canonical, so any valid spelling is canonical).
func (r *rewriter) number(i int) (int, bool) {
	in := r.in
	if i < len(in) && in[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case digits() == 0:
		return 0, false
	}
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			return 0, false
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	return i, true
}

// str reads the string at i, which must be spelt as Canonical's appendString spells it (so that decoding and
// encoding it again gives the same bytes): escaped are '"', '\\' and the control characters only (\b \f \n \r
// \t, the others \u00xx in lower case), and the UTF-8 is valid. escapes says whether it holds any.
func (r *rewriter) str(i int) (end int, escapes bool, ok bool) {
	in := r.in
	for i++; i < len(in); {
		// Eight bytes at a time while none needs a look (most of a resource's strings are plain ASCII text):
		// the byte loop below cost an eighth of a large extract's CPU.
		for i+8 <= len(in) && plainASCII(binary.LittleEndian.Uint64(in[i:])) {
			i += 8
		}
		if i >= len(in) {
			break
		}
		c := in[i]
		switch {
		case c == '"':
			return i + 1, escapes, true
		case c == '\\':
			escapes = true
			if i+1 >= len(in) {
				return 0, false, false
			}
			switch in[i+1] {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				i += 2
				continue
			case 'u':
				if i+6 > len(in) || in[i+2] != '0' || in[i+3] != '0' || (in[i+4] != '0' && in[i+4] != '1') {
					return 0, false, false
				}
				lo := bytes.IndexByte([]byte(hexDigits), in[i+5])
				switch v := int(in[i+4]-'0')<<4 | lo; {
				case lo < 0, v == '\b', v == '\f', v == '\n', v == '\r', v == '\t':
					return 0, false, false
				}
				i += 6
				continue
			}
			return 0, false, false
		case c < 0x20:
			return 0, false, false
		case c < utf8.RuneSelf:
			i++
		default:
			ru, size := utf8.DecodeRune(in[i:])
			if ru == utf8.RuneError && size == 1 {
				return 0, false, false
			}
			i += size
		}
	}
	return 0, false, false
}

// plainASCII says whether none of the eight bytes of w is '"', '\\', a control character or a byte of a
// multi-byte UTF-8 sequence: the bytes str steps over one by one. A byte at or above 0x80 sets its high bit;
// below 0x20, x - 0x20 borrows into it; equal to '"' or '\\', the XOR with it is zero and x - 0x01 borrows.
// (A borrow from one byte can flag its neighbour too, which only sends str to its byte loop: never wrong.)
func plainASCII(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := w - 0x20*ones
	quote := (w ^ '"'*ones) - ones
	quoteZero := quote &^ (w ^ '"'*ones)
	backslash := (w ^ '\\'*ones) - ones
	backslashZero := backslash &^ (w ^ '\\'*ones)
	return (w|control&^w|quoteZero|backslashZero)&highs == 0
}

func (r *rewriter) array(i int) (int, bool) {
	if r.depth++; r.depth > maxRewriteDepth {
		return 0, false
	}
	defer func() { r.depth-- }()
	in, at := r.in, len(r.pointer)
	i++
	if i < len(in) && in[i] == ']' {
		return i + 1, true
	}
	for n := 0; ; n++ {
		r.pointer = appendIndex(append(r.pointer[:at], '/'), n)
		end, ok := r.value(i)
		r.pointer = r.pointer[:at]
		if !ok || end >= len(in) {
			return 0, false
		}
		switch in[end] {
		case ',':
			i = end + 1
		case ']':
			return end + 1, true
		default:
			return 0, false
		}
	}
}

func appendIndex(b []byte, n int) []byte {
	if n >= 10 {
		b = appendIndex(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// The display a removed reference leaves when the object had none, as a member of the rewritten object.
const notIncludedMember = `"display":"` + NotIncluded + `"`

// object reads the object at i. Its members come in Canonical's order: sorted bytewise, except that at the
// root "resourceType" comes first. Walking them in that order, the originals come in the tree path's order
// (an object's own before those inside it, in the order of the sorted names), the root's "resourceType"
// excepted, whose value must then not hold an object.
func (r *rewriter) object(start int) (int, bool) {
	if r.depth++; r.depth > maxRewriteDepth {
		return 0, false
	}
	defer func() { r.depth-- }()
	in, root, at := r.in, r.depth == 1, len(r.pointer)
	var (
		prev       []byte // the previous member's name (the root's "resourceType" aside)
		hasDisplay bool
		insertAt   = -1               // where in out a display goes: before the first member between "display" and "reference"
		changed    bool               // whether this object's reference changed
		original   = len(r.originals) // where its original goes: before those of the objects inside it
	)
	i := start + 1
	if i < len(in) && in[i] == '}' {
		return i + 1, true
	}
	for first := true; ; first = false {
		member := i
		if i >= len(in) || in[i] != '"' {
			return 0, false
		}
		end, escapes, ok := r.str(i)
		if !ok || escapes || end >= len(in) || in[end] != ':' {
			return 0, false // a name spelt with escapes, rare, is ordered on its decoded bytes: the tree path's
		}
		name := in[i+1 : end-1]
		switch {
		case root && first && string(name) == "resourceType":
			if v := end + 1; v < len(in) && (in[v] == '{' || in[v] == '[') {
				return 0, false
			}
		case prev != nil && bytes.Compare(prev, name) >= 0, root && string(name) == "resourceType",
			changed && string(name) == "resourceType":
			return 0, false
		default:
			prev = name
		}
		i = end + 1
		switch {
		case string(name) == "display":
			hasDisplay = true
		case insertAt < 0 && string(name) > "display" && string(name) < "reference":
			insertAt = len(r.out) + member - r.done
		}
		if string(name) == "reference" && i < len(in) && in[i] == '"' {
			end, escapes, ok := r.str(i)
			if !ok || escapes {
				return 0, false
			}
			ref := in[i+1 : end-1]
			if len(ref) > 0 && ref[0] == '#' {
				i = end
			} else if full, found := r.b.lookup(ref); found && full == string(ref) {
				i = end
			} else {
				if root {
					return 0, false
				}
				changed = true
				switch {
				case found:
					r.flush(i)
					r.out = appendString(r.out, full)
				case hasDisplay: // not the first member: drop it with the comma before it
					r.flush(member - 1)
				case insertAt >= 0:
					r.flush(member - 1)
					r.out = slices.Insert(r.out, insertAt, []byte(notIncludedMember+",")...)
				default:
					r.flush(member)
					r.out = append(r.out, notIncludedMember...)
				}
				r.done, i = end, end
			}
		} else {
			r.pointer = appendPointerToken(append(r.pointer[:at], '/'), name)
			end, ok := r.value(i)
			r.pointer = r.pointer[:at]
			if !ok {
				return 0, false
			}
			i = end
		}
		if i >= len(in) {
			return 0, false
		}
		switch in[i] {
		case ',':
			i++
		case '}':
			if changed {
				r.originals = slices.Insert(r.originals, original, string(r.pointer[:at])+" "+string(in[start:i+1]))
			}
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// appendPointerToken appends a member name as a JSON pointer's token (RFC 6901: "~" as "~0", "/" as "~1").
func appendPointerToken(b, name []byte) []byte {
	for _, c := range name {
		switch c {
		case '~':
			b = append(b, '~', '0')
		case '/':
			b = append(b, '~', '1')
		default:
			b = append(b, c)
		}
	}
	return b
}
