package identity

import (
	"strings"
	"testing"
)

// A register is read as strictly as a receipt: a second, case-variant or duplicate name is refused and named,
// so a verifier never checks a key other than the one a person reading the file sees.
func TestReadOfficersRegisterIsStrict(t *testing.T) {
	const good = `{"format":"gatewayd-officers/1","exported_at":"2026-11-30T10:00:00Z","keys":[]}`
	if _, err := ReadOfficersRegister(strings.NewReader(good)); err != nil {
		t.Fatalf("a plain register refused: %v", err)
	}
	for name, in := range map[string]string{
		"duplicate name":    `{"format":"gatewayd-officers/1","keys":[{"public_key":"AAAA","public_key":"BBBB"}]}`,
		"case variant":      `{"format":"gatewayd-officers/1","keys":[{"public_key":"AAAA","Public_Key":"BBBB"}]}`,
		"invalid UTF-8":     "{\"format\":\"gatewayd-officers/1\",\"exported_at\":\"\xff\",\"keys\":[]}",
		"data after":        good + `{}`,
		"another format":    `{"format":"gatewayd-officers/9","keys":[]}`,
		"an unknown member": `{"format":"gatewayd-officers/1","keys":[],"extra":1}`,
	} {
		if _, err := ReadOfficersRegister(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "officers' register: ") {
			t.Errorf("%s: error %q does not say it is the register", name, err)
		}
	}
}
