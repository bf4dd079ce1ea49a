package gateway

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	"gatewayd/approvals"
)

// emergencyConfig holds the settings of emergency access and alerts (issue 10, points 4 and 5).
type emergencyConfig struct {
	// EmergencyExtractTTL is the lifetime, default and longest, of an emergency extract.
	EmergencyExtractTTL time.Duration
	// EmergencyReviewWithin is the post-hoc review deadline of an emergency release.
	EmergencyReviewWithin time.Duration
	// AlertSyslog is the unix datagram socket (usually /dev/log) alerts go to; empty: none.
	AlertSyslog string
	// AlertWebhook is an internal URL alerts are posted to (JSON); its host must resolve inside --console-allow.
	AlertWebhook string
}

func (c *emergencyConfig) registerEmergencyFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.EmergencyExtractTTL, "emergency-extract-ttl", approvals.DefaultEmergencyExtractTTL, "lifetime (default and longest) of an emergency extract")
	fs.DurationVar(&c.EmergencyReviewWithin, "emergency-review-within", approvals.DefaultEmergencyReviewWithin, "a second officer must confirm or flag an emergency release within this time")
	fs.StringVar(&c.AlertSyslog, "alert-syslog", "", "local syslog socket (e.g. /dev/log) for queue and emergency alerts, RFC 5424, ids and counts only")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", "", "internal URL that queue and emergency alerts are posted to (JSON); its host must resolve inside --console-allow")
}

func (c *emergencyConfig) finishEmergency(maxExtractTTL time.Duration) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--emergency-extract-ttl", c.EmergencyExtractTTL}, {"--emergency-review-within", c.EmergencyReviewWithin}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be a positive duration (e.g. 2h)", d.flag)
		}
	}
	if c.EmergencyExtractTTL > maxExtractTTL {
		return fmt.Errorf("--emergency-extract-ttl: %s exceeds --max-extract-ttl (%s)", c.EmergencyExtractTTL, maxExtractTTL)
	}
	if c.AlertWebhook != "" {
		// Resolving the host against the allowed networks is serve's (alerts.New): the other commands never send.
		if u, err := url.Parse(c.AlertWebhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			return fmt.Errorf("--alert-webhook: %q is not an http(s) URL", c.AlertWebhook)
		}
	}
	return nil
}
