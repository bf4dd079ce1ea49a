package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"gatewayd/gateway/store/storetest"
	"gatewayd/gateway/tlstest"
)

// TestCheckServingRefusesDisagreement: serve refuses, with one line naming the setting, a public URL and TLS
// settings that disagree; settings that agree (own TLS on the certificate's host, or a TLS proxy in front) pass.
func TestCheckServingRefusesDisagreement(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	good := ca.Issue(t, dir, "good", "demandes.hopital.test", "passerelle.hopital.test")
	other := ca.Issue(t, dir, "other", "elsewhere.test")
	tlsArgs := func(s tlstest.Server) []string { return []string{"--tls-cert", s.CertFile, "--tls-key", s.KeyFile} }
	urls := []string{"--public-intake-url", "https://demandes.hopital.test:8443", "--public-console-url", "https://passerelle.hopital.test:8444"}
	cases := []struct {
		name string
		args []string
		want string // "" means accepted
	}{
		{"own TLS on the certificate's hosts", append(tlsArgs(good), urls...), ""},
		{"TLS proxy in front", append([]string{"--trusted-proxies", "10.30.0.2/32"}, urls...), ""},
		{"plain HTTP on localhost", nil, ""},
		{"TLS under an http:// origin", append(tlsArgs(good), "--public-intake-url", "http://demandes.hopital.test:8443",
			"--public-console-url", "https://passerelle.hopital.test:8444"), "--public-intake-url: http://demandes.hopital.test:8443 is http:// but --tls-cert serves HTTPS"},
		{"certificate for another host", append(tlsArgs(other), urls...), "--tls-cert: the certificate does not name demandes.hopital.test"},
		{"certificate with another's key", append([]string{"--tls-cert", good.CertFile, "--tls-key", other.KeyFile}, urls...), "--tls-cert, --tls-key: not a certificate and its private key"},
		{"https:// with neither TLS nor a proxy", urls, "--public-intake-url: https://demandes.hopital.test:8443 is https:// but this listener serves plain HTTP"},
		{"an IP address as origin", []string{"--public-console-url", "http://10.20.0.5:8081"}, "--public-console-url: 10.20.0.5 is an IP address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(append([]string{"--data-dir", t.TempDir()}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if err := cfg.Load(fs); err != nil {
				t.Fatal(err)
			}
			err := cfg.CheckServing()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("not one line: %q", err)
			}
		})
	}
}

// TestHTTPSBehindProxy: with an https:// origin and a TLS proxy in front, cookies are __Host- and Secure and
// HSTS is sent, though this process serves plain HTTP; a plain http:// listener sends neither.
func TestHTTPSBehindProxy(t *testing.T) {
	for _, https := range []bool{true, false} {
		args := []string{}
		if https {
			args = []string{"--trusted-proxies", "127.0.0.1/32", "--public-intake-url", "https://demandes.hopital.test"}
		}
		s := testServer(t, storetest.NewSQLite(t), testConfig(t, args...))
		res := s.call(Intake, httptest.NewRequest("GET", "/signin?lang=en", nil))
		hsts := res.Header().Get("Strict-Transport-Security")
		cookies := res.Result().Cookies()
		if len(cookies) != 2 {
			t.Fatalf("https=%v: cookies %v, want the language and the pre-session ones", https, cookies)
		}
		for _, ck := range cookies {
			// The language cookie is no secret: Secure is enough; the pre-session one is pinned to the host.
			host := strings.HasPrefix(ck.Name, "__Host-") || (ck.Name == "lang" && https)
			if host != https || ck.Secure != https || (https && ck.Path != "/") {
				t.Errorf("https=%v: cookie %s Secure=%v Path=%q", https, ck.Name, ck.Secure, ck.Path)
			}
		}
		if (hsts != "") != https || (https && !strings.Contains(hsts, "max-age=63072000")) {
			t.Errorf("https=%v: HSTS %q", https, hsts)
		}
	}
}
