package records

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzWriteJSONString: writeJSONString writes the bytes json.Marshal gives, whatever the string.
func FuzzWriteJSONString(f *testing.F) {
	for _, s := range []string{"", "abc", `{"reference":"Practitioner/1"}`, "<a href='x'>&amp;</a>", "\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f",
		"é€😀\ufffd", "\u2028\u2029", "\xff\xfe", "\xed\xa0\x80", "a\\b\"c", "/ 0~1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		bw := bufio.NewWriterSize(&got, 16) // smaller than many strings: the buffer grows
		writeJSONString(bw, s)
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%q: wrote %s, json.Marshal gives %s", s, got.Bytes(), want)
		}
	})
}
