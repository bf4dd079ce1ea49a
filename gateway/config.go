package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // --time-zone works without the system's zoneinfo

	"github.com/spf13/pflag"

	"gatewayd/approvals"

	"gatewayd/gateway/records"
)

// Config is every setting of every subcommand. One rule for all: flag --foo-bar is also the environment
// variable GATEWAY_FOO_BAR, and the flag wins.
type Config struct {
	DataDir          string
	DB               string
	KeyFile          string
	IntakeListen     string
	ConsoleListen    string
	ConsoleAllow     []netip.Prefix
	TrustedProxies   []netip.Prefix
	PublicIntakeURL  string
	PublicConsoleURL string
	TLSCert          string
	TLSKey           string
	LogFormat        string
	MaxFileSize      int64 // bytes; gatewayd import refuses a file above it
	MaxResourceSize  int64 // bytes; gatewayd import refuses one resource (entry, NDJSON line) above it
	// DBWait is how long serve waits for the database at start (a flag of serve only; 0: try once).
	DBWait time.Duration

	// Identity (issue 4).
	DevAllowSoftwareKeys bool
	AttestationRoots     string
	SessionIdleConsole   time.Duration
	SessionIdleIntake    time.Duration
	SessionMax           time.Duration
	InvitationTTL        time.Duration

	// Approvals policy (issue 5).
	TwoOfficerCategories []string
	MaxPending           time.Duration
	MaxExtractTTL        time.Duration
	DefaultExtractTTL    time.Duration
	FilingLimit          int
	JobsInterval         time.Duration

	// TimeZone is the hospital's time zone: pages and printable extracts show times in it (FHIR keeps UTC).
	TimeZone *time.Location

	// Operating for years (issue 13).
	operatingConfig
	// Emergency access and alerts (issue 10).
	emergencyConfig

	timeZone       string
	consoleAllow   []string
	trustedProxies []string
}

// EnvName is the environment variable that stands for a flag.
func EnvName(flag string) string {
	return "GATEWAY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// RegisterFlags declares the settings on fs. Defaults that depend on other settings (--db, --key-file, the
// public URLs) are left empty here and filled by Load.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./var", "folder for the default database and key file")
	fs.StringVar(&c.DB, "db", "", "a postgres:// URL, or an SQLite file path (default <data-dir>/gateway.db)")
	fs.StringVar(&c.KeyFile, "key-file", "", "master key file (default <data-dir>/gateway.key)")
	fs.StringVar(&c.IntakeListen, "intake-listen", "127.0.0.1:8080", "address of the intake listener (the remote side)")
	fs.StringVar(&c.ConsoleListen, "console-listen", "127.0.0.1:8081", "address of the console listener (internal side)")
	fs.StringSliceVar(&c.consoleAllow, "console-allow", []string{"127.0.0.0/8", "::1/128"}, "networks allowed on the console (CIDR list)")
	fs.StringSliceVar(&c.trustedProxies, "trusted-proxies", nil, "proxies whose X-Forwarded-For is believed (CIDR list)")
	fs.StringVar(&c.PublicIntakeURL, "public-intake-url", "", "origin of the intake as browsers see it (default from --intake-listen)")
	fs.StringVar(&c.PublicConsoleURL, "public-console-url", "", "origin of the console as browsers see it (default from --console-listen)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM) for both listeners")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM) for both listeners")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.DevAllowSoftwareKeys, "dev-allow-software-keys", false, "let data officers use any authenticator (trials only; refused with TLS)")
	fs.StringVar(&c.AttestationRoots, "attestation-roots", "", "MDS3 blob file, PEM file, or folder of PEM root certificates that officers' security keys must chain to")
	fs.DurationVar(&c.SessionIdleConsole, "session-idle-console", 15*time.Minute, "console sessions end after this long without a request")
	fs.DurationVar(&c.SessionIdleIntake, "session-idle-intake", 30*time.Minute, "intake sessions end after this long without a request")
	fs.DurationVar(&c.SessionMax, "session-max", 8*time.Hour, "absolute lifetime of a session")
	fs.DurationVar(&c.InvitationTTL, "invitation-ttl", 72*time.Hour, "how long an invitation link stays valid")
	fs.Var(newSizeValue(&c.MaxFileSize, 256<<20), "max-file-size", "largest file import reads, in bytes or with KiB, MiB, GiB")
	fs.Var(newSizeValue(&c.MaxResourceSize, records.DefaultMaxResourceSize), "max-resource-size", "largest single resource (Bundle entry, NDJSON line) import reads; import's memory is bounded by it")
	fs.StringSliceVar(&c.TwoOfficerCategories, "two-officer-categories", nil, "categories whose release needs two different officers (e.g. documents)")
	fs.DurationVar(&c.MaxPending, "max-pending", 168*time.Hour, "a request waiting longer than this for a decision lapses")
	fs.DurationVar(&c.MaxExtractTTL, "max-extract-ttl", 72*time.Hour, "longest extract lifetime an officer may choose")
	fs.DurationVar(&c.DefaultExtractTTL, "default-extract-ttl", 24*time.Hour, "extract lifetime offered by default")
	fs.IntVar(&c.FilingLimit, "filing-limit", 30, "requests one requester may file in 24 hours")
	fs.DurationVar(&c.JobsInterval, "jobs-interval", time.Minute, "how often the lapse and extract-expiry jobs run")
	fs.StringVar(&c.timeZone, "time-zone", DefaultTimeZone, "the hospital's time zone (IANA name) for times on pages and printable extracts")
	c.registerOperatingFlags(fs)
	c.registerEmergencyFlags(fs)
}

// DefaultTimeZone is the time zone of the pages when none is configured. The zone database is embedded
// (time/tzdata), so it works on a machine without zoneinfo.
const DefaultTimeZone = "Europe/Paris"

// Load applies GATEWAY_* variables to the flags not given on the command line, fills derived defaults and
// validates everything. The error names the setting and what is wrong, in one line.
func (c *Config) Load(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		v, ok := os.LookupEnv(EnvName(f.Name))
		if !ok {
			return
		}
		if sl, isSlice := f.Value.(pflag.SliceValue); isSlice {
			// An empty variable means an empty list, not a list holding "".
			var items []string
			if strings.TrimSpace(v) != "" {
				items = strings.Split(v, ",")
			}
			if e := sl.Replace(items); e != nil {
				err = fmt.Errorf("%s: %v", EnvName(f.Name), e)
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s: %v", EnvName(f.Name), e)
		}
	})
	if err != nil {
		return err
	}
	return c.finish()
}

func (c *Config) finish() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir: must not be empty")
	}
	if c.DB == "" {
		c.DB = filepath.Join(c.DataDir, "gateway.db")
	}
	if c.KeyFile == "" {
		c.KeyFile = filepath.Join(c.DataDir, "gateway.key")
	}
	if strings.Contains(c.DB, "://") && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return fmt.Errorf("--db: %q is neither a postgres:// URL nor a file path", redactURL(c.DB))
	}
	for name, addr := range map[string]string{"--intake-listen": c.IntakeListen, "--console-listen": c.ConsoleListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port", name, addr)
		}
	}
	if c.IntakeListen == c.ConsoleListen {
		return fmt.Errorf("--console-listen: must differ from --intake-listen (%s)", c.IntakeListen)
	}
	var err error
	if c.ConsoleAllow, err = parsePrefixes("--console-allow", c.consoleAllow); err != nil {
		return err
	}
	if len(c.ConsoleAllow) == 0 {
		return fmt.Errorf("--console-allow: must name at least one network")
	}
	if c.TrustedProxies, err = parsePrefixes("--trusted-proxies", c.trustedProxies); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key: give both or neither")
	}
	for _, f := range []struct{ flag, path string }{{"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("%s: cannot read %s", f.flag, f.path)
			}
		}
	}
	if c.PublicIntakeURL, err = publicURL("--public-intake-url", c.PublicIntakeURL, c.IntakeListen, c.TLS()); err != nil {
		return err
	}
	if c.PublicConsoleURL, err = publicURL("--public-console-url", c.PublicConsoleURL, c.ConsoleListen, c.TLS()); err != nil {
		return err
	}
	if c.MaxFileSize <= 0 {
		return fmt.Errorf("--max-file-size: must be above zero")
	}
	if c.TimeZone, err = time.LoadLocation(c.timeZone); err != nil || c.timeZone == "" || c.timeZone == "Local" {
		return fmt.Errorf("--time-zone: %q is not a time zone name (e.g. Europe/Paris)", c.timeZone)
	}
	if c.MaxResourceSize <= 0 {
		return fmt.Errorf("--max-resource-size: must be above zero")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format: %q is not text or json", c.LogFormat)
	}
	if c.DevAllowSoftwareKeys && (c.TLS() || c.HTTPS(Intake) || c.HTTPS(Console)) {
		return fmt.Errorf("--dev-allow-software-keys: refused with TLS (--tls-cert or an https:// public URL): it is for trials on this machine only")
	}
	if c.AttestationRoots != "" {
		if _, err := os.Stat(c.AttestationRoots); err != nil {
			return fmt.Errorf("--attestation-roots: cannot read %s", c.AttestationRoots)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--session-idle-console", c.SessionIdleConsole}, {"--session-idle-intake", c.SessionIdleIntake},
		{"--session-max", c.SessionMax}, {"--invitation-ttl", c.InvitationTTL}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be a positive duration (e.g. 15m)", d.flag)
		}
	}
	if err := c.finishOperating(); err != nil {
		return err
	}
	if err := c.finishPolicy(); err != nil {
		return err
	}
	return c.finishEmergency(c.MaxExtractTTL)
}

// finishPolicy checks the approvals policy settings, one clear line each.
func (c *Config) finishPolicy() error {
	var cats []string
	for _, name := range c.TwoOfficerCategories {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if !slices.Contains(approvals.Categories, approvals.Category(name)) {
			return fmt.Errorf("--two-officer-categories: %q is not a category (one of %s)", name, categoryNames())
		}
		cats = append(cats, name)
	}
	c.TwoOfficerCategories = cats
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--max-pending", c.MaxPending}, {"--max-extract-ttl", c.MaxExtractTTL}, {"--default-extract-ttl", c.DefaultExtractTTL},
		{"--jobs-interval", c.JobsInterval}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be a positive duration (e.g. 24h)", d.flag)
		}
	}
	if c.DefaultExtractTTL > c.MaxExtractTTL {
		return fmt.Errorf("--default-extract-ttl: %s exceeds --max-extract-ttl (%s)", c.DefaultExtractTTL, c.MaxExtractTTL)
	}
	if c.FilingLimit <= 0 {
		return fmt.Errorf("--filing-limit: must be at least 1 (requests per requester per 24 hours)")
	}
	return nil
}

func categoryNames() string {
	s := make([]string, len(approvals.Categories))
	for i, c := range approvals.Categories {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// Policy is the approvals policy the settings describe.
func (c *Config) Policy() approvals.Policy {
	p := approvals.Policy{MaxPending: c.MaxPending, MaxExtractTTL: c.MaxExtractTTL, DefaultExtractTTL: c.DefaultExtractTTL,
		FilingLimit: c.FilingLimit, EmergencyExtractTTL: c.EmergencyExtractTTL, EmergencyReviewWithin: c.EmergencyReviewWithin}
	for _, name := range c.TwoOfficerCategories {
		p.TwoOfficerCategories = append(p.TwoOfficerCategories, approvals.Category(name))
	}
	return p
}

// TLS says whether both listeners serve HTTPS themselves.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// HTTPS says whether browsers reach a listener over HTTPS: served by the listener itself (--tls-cert) or by a
// TLS proxy in front of it (an https:// public URL). Its cookies are then __Host- and Secure, and HSTS is sent.
func (c *Config) HTTPS(listener string) bool {
	return strings.HasPrefix(c.PublicURL(listener), "https://")
}

// PublicURL is a listener's origin as browsers see it.
func (c *Config) PublicURL(listener string) string {
	if listener == Intake {
		return c.PublicIntakeURL
	}
	return c.PublicConsoleURL
}

// CheckServing refuses, before serve opens anything, settings under which browsers could not use the
// listeners: an origin that is an IP address (WebAuthn refuses it as relying-party id), TLS served under an
// http:// origin, a certificate that does not match its key or does not name the public host, or an https://
// origin with neither TLS here nor a trusted proxy in front to terminate it.
func (c *Config) CheckServing() error {
	var leaf *x509.Certificate
	if c.TLS() {
		pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert, --tls-key: not a certificate and its private key: %v", err)
		}
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("--tls-cert: %v", err)
		}
	}
	for _, l := range []struct{ name, flag string }{{Intake, "--public-intake-url"}, {Console, "--public-console-url"}} {
		u, err := url.Parse(c.PublicURL(l.name))
		if err != nil {
			return fmt.Errorf("%s: %v", l.flag, err)
		}
		if _, err := netip.ParseAddr(u.Hostname()); err == nil {
			return fmt.Errorf("%s: %s is an IP address; passkeys need a host name (WebAuthn refuses an IP as relying-party id)", l.flag, u.Hostname())
		}
		switch {
		case c.TLS() && u.Scheme != "https":
			return fmt.Errorf("%s: %s is http:// but --tls-cert serves HTTPS; give the https:// origin", l.flag, u)
		case c.TLS():
			if err := leaf.VerifyHostname(u.Hostname()); err != nil {
				return fmt.Errorf("--tls-cert: the certificate does not name %s (%s): %v", u.Hostname(), l.flag, err)
			}
		case u.Scheme == "https" && len(c.TrustedProxies) == 0:
			return fmt.Errorf("%s: %s is https:// but this listener serves plain HTTP: give --tls-cert and --tls-key, or name the TLS proxy in front in --trusted-proxies", l.flag, u)
		}
	}
	return nil
}

func parsePrefixes(flag string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR network (e.g. 10.0.0.0/8)", flag, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// publicURL checks a configured origin, or derives one from a listen address. Browsers' WebAuthn refuses IP
// addresses as relying-party ids, so a loopback or unspecified host becomes "localhost".
func publicURL(flag, given, listen string, tls bool) (string, error) {
	if given == "" {
		host, port, _ := net.SplitHostPort(listen)
		if ip, err := netip.ParseAddr(host); host == "" || (err == nil && (ip.IsLoopback() || ip.IsUnspecified())) {
			host = "localhost"
		}
		scheme := "http"
		if tls {
			scheme = "https"
		}
		return scheme + "://" + net.JoinHostPort(host, port), nil
	}
	u, err := url.Parse(given)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%s: %q is not an origin like https://gateway.example.org", flag, given)
	}
	return u.Scheme + "://" + u.Host, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// Durations used by the server that are not (yet) settings.
const shutdownGrace = 15 * time.Second
