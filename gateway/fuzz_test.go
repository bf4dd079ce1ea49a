package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// FuzzParseFiling: any body, as a form or as JSON, is parsed or refused without a panic and without reading
// past the filing's limit.
func FuzzParseFiling(f *testing.F) {
	f.Add("application/json", []byte(`{"patient_system":"urn:x","patient_value":"1","categories":["allergies"],"purpose":"care_continuity","justification":"Admitted tonight.","urgency":"urgent","delivery":"requester"}`))
	f.Add("application/x-www-form-urlencoded", []byte("patient_system=urn%3Ax&patient_value=1&categories=allergies&justification=a%00b"))
	f.Add("application/json", []byte(`{"Justification":"x","justification":"y"}`))
	e := echo.New()
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/requests", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", ct)
		c := e.NewContext(req, httptest.NewRecorder())
		in, err := parseFiling(c)
		if err == nil && len(body) > maxFilingBody {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
		_ = in.filing("u1")
	})
}

// FuzzForwardedFor: whatever X-Forwarded-For a trusted proxy passes on, the client address is a bare IP or
// nothing (which the console refuses); an address is never taken from a garbled header.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.5", "203.0.113.5:4711", "[2001:db8::5]", "unknown", "", "a,,b", "10.0.0.1, 127.0.0.1", "fe80::1%eth0"} {
		f.Add(s)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	extract := clientIPExtractor(trusted)
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "127.0.0.1:4000"
		r.Header.Set("X-Forwarded-For", xff)
		got := extract(r)
		if got == "" {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil || a.Zone() != "" {
			t.Fatalf("X-Forwarded-For %q gave %q, not a bare IP", xff, got)
		}
		// Every hop from the right up to the chosen one parses as a bare IP.
		hops := strings.Split(xff, ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil || h.Zone() != "" {
				t.Fatalf("X-Forwarded-For %q: garbled hop %q before the client %q", xff, hops[i], got)
			}
			if h.Unmap().String() == got {
				break
			}
		}
	})
}
