package gateway

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/pflag"
)

// operatingConfig holds the settings of running the gateway for years (issue 13): metrics, review deadlines.
type operatingConfig struct {
	// MetricsAllow lets a scraper at these addresses read /metrics on the console without a session
	// (Prometheus cannot sign in with a passkey). Empty: only a signed-in admin may read it.
	MetricsAllow    []netip.Prefix
	ReviewDue       time.Duration
	ReviewDueUrgent time.Duration

	metricsAllow []string
}

func (c *operatingConfig) registerOperatingFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.metricsAllow, "metrics-allow", nil, "scrapers allowed to read /metrics on the console without a session (CIDR list; default none: admins only)")
	fs.DurationVar(&c.ReviewDue, "review-due", 24*time.Hour, "a routine request waiting longer than this counts as an overdue review in /metrics")
	fs.DurationVar(&c.ReviewDueUrgent, "review-due-urgent", time.Hour, "an urgent request waiting longer than this counts as an overdue review in /metrics")
}

func (c *operatingConfig) finishOperating() error {
	var err error
	if c.MetricsAllow, err = parsePrefixes("--metrics-allow", c.metricsAllow); err != nil {
		return err
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--review-due", c.ReviewDue}, {"--review-due-urgent", c.ReviewDueUrgent}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be a positive duration (e.g. 24h)", d.flag)
		}
	}
	return nil
}
