package gateway

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/pflag"
)

// operatingConfig holds the settings of running the gateway for years (issue 13): metrics, review deadlines,
// audit retention and syslog.
type operatingConfig struct {
	// AuditRetentionMonths is how long audit rows are held (0: forever). The default, 12 months, follows the
	// CNIL's recommendation for access logs (six months to a year); patients' access histories keep a summary.
	AuditRetentionMonths int
	// Syslog is the unix datagram socket (usually /dev/log) that serve sends each new audit row to; empty: off.
	Syslog string
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
	fs.IntVar(&c.AuditRetentionMonths, "audit-retention-months", 12, "audit rows older than this many months are purged, leaving a checkpoint and summaries (0: keep forever)")
	fs.StringVar(&c.Syslog, "syslog", "", "local syslog socket (e.g. /dev/log) to send each new audit row to, RFC 5424, ids and actions only")
	fs.DurationVar(&c.ReviewDueUrgent, "review-due-urgent", time.Hour, "an urgent request waiting longer than this counts as an overdue review in /metrics")
}

func (c *operatingConfig) finishOperating() error {
	var err error
	if c.MetricsAllow, err = parsePrefixes("--metrics-allow", c.metricsAllow); err != nil {
		return err
	}
	if c.AuditRetentionMonths < 0 {
		return fmt.Errorf("--audit-retention-months: must be 0 (keep forever) or more")
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

// AuditCutoff is the time before which audit rows are purged at now.
func (c *operatingConfig) AuditCutoff(now time.Time) time.Time {
	return now.AddDate(0, -c.AuditRetentionMonths, 0)
}
