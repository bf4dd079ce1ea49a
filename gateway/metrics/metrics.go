// Package metrics tells operators how the gateway is doing, in the Prometheus text format, without telling
// them anything about patients: every value is a count, an age or a duration read from the database at scrape
// time, and every label comes from a fixed set of words (states, urgencies, refusal codes), never from an id,
// a name or free text.
//
// Values are read from the database rather than counted in memory, so that several instances behind one load
// balancer all report the same numbers and a restart loses nothing.
package metrics

import (
	"context"
	"encoding/json"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"
)

// Config is what the collector needs.
type Config struct {
	DB  *gorm.DB
	Now func() time.Time
	// ReviewDue and ReviewDueUrgent are how long a routine or an urgent request may wait for a decision
	// before it counts as overdue.
	ReviewDue, ReviewDueUrgent time.Duration
}

// The fixed label values. A state the database holds outside these sets is reported as "other", so that a
// bug cannot leak a value into a label.
var (
	requestStates = []string{"pending", "awaiting_second", "approved", "denied", "cancelled", "lapsed"}
	extractStates = []string{"ready", "retrieved", "expired", "revoked"}
	urgencies     = []string{"routine", "urgent"}
	// refusal codes are words the code writes (approvals' refusal table); anything else becomes "other".
	reasonWord = regexp.MustCompile(`^[a-z_]{1,40}$`)
)

const ns = "gatewayd"

var (
	descRequests      = prometheus.NewDesc(ns+"_requests", "Requests by state.", []string{"state"}, nil)
	descQueue         = prometheus.NewDesc(ns+"_queue_length", "Requests waiting for a decision (pending or awaiting a second officer).", nil, nil)
	descOldest        = prometheus.NewDesc(ns+"_queue_oldest_age_seconds", "Age of the oldest request waiting for a decision (0 when none waits).", nil, nil)
	descOverdue       = prometheus.NewDesc(ns+"_reviews_overdue", "Requests waiting for a decision longer than the review deadline (--review-due, --review-due-urgent).", []string{"urgency"}, nil)
	descExtracts      = prometheus.NewDesc(ns+"_extracts", "Extracts by state.", []string{"state"}, nil)
	descRetrievals    = prometheus.NewDesc(ns+"_extract_retrievals_total", "Extracts retrieved (audit rows still held).", nil, nil)
	descRefusals      = prometheus.NewDesc(ns+"_extract_refusals_total", "Refused retrievals by reason (audit rows still held).", []string{"reason"}, nil)
	descAuditRows     = prometheus.NewDesc(ns+"_audit_rows_total", "Audit rows ever appended (the chain's last sequence number).", nil, nil)
	descAuditHeld     = prometheus.NewDesc(ns+"_audit_rows_held", "Audit rows held in the database (after retention).", nil, nil)
	descImports       = prometheus.NewDesc(ns+"_import_runs_total", "Import runs by outcome (audit rows still held).", []string{"outcome"}, nil)
	descDBUp          = prometheus.NewDesc(ns+"_database_up", "1 when the database answered this scrape's queries.", nil, nil)
	descDBRoundTrip   = prometheus.NewDesc(ns+"_database_round_trip_seconds", "Time of one trivial query (SELECT 1) during this scrape.", nil, nil)
	descScrapeSeconds = prometheus.NewDesc(ns+"_metrics_scrape_seconds", "Time the database queries of this scrape took.", nil, nil)
)

// Collector reads the gateway's state at each scrape.
type Collector struct{ cfg Config }

// New returns a collector over cfg.DB.
func New(cfg Config) *Collector {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg}
}

// Registry returns a registry holding the gateway's collector and the Go runtime and process collectors
// (memory, goroutines, file descriptors: nothing about patients).
func Registry(c *Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descQueue, descOldest, descOverdue, descExtracts, descRetrievals,
		descRefusals, descAuditRows, descAuditHeld, descImports, descDBUp, descDBRoundTrip, descScrapeSeconds} {
		ch <- d
	}
}

// scrapeTimeout bounds the database work of one scrape: a slow database shows as database_up 0, not as a
// scrape that hangs.
const scrapeTimeout = 5 * time.Second

// Collect queries the database and sends the values. A query that fails sets database_up to 0 and leaves
// its metrics out of this scrape, rather than reporting zeros that look true.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	db := c.cfg.DB.WithContext(ctx)
	start := time.Now()
	up := 1.0
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	t0 := time.Now()
	if err := db.Exec("SELECT 1").Error; err != nil {
		gauge(descDBUp, 0)
		return
	}
	gauge(descDBRoundTrip, time.Since(t0).Seconds())
	for _, part := range []func(*gorm.DB, func(*prometheus.Desc, float64, ...string), func(*prometheus.Desc, float64, ...string)) error{
		c.requests, c.extracts, c.audit,
	} {
		if err := part(db, gauge, counter); err != nil {
			up = 0
		}
	}
	gauge(descDBUp, up)
	gauge(descScrapeSeconds, time.Since(start).Seconds())
}

type labelCount struct {
	Label string
	N     int64
}

// byLabel fills every known label with its count (zero when absent) and puts unknown ones under "other".
func byLabel(rows []labelCount, known []string) map[string]int64 {
	out := map[string]int64{}
	for _, k := range known {
		out[k] = 0
	}
	for _, r := range rows {
		if _, ok := out[r.Label]; ok {
			out[r.Label] += r.N
		} else {
			out["other"] += r.N
		}
	}
	return out
}

type emit = func(*prometheus.Desc, float64, ...string)

func (c *Collector) requests(db *gorm.DB, gauge, _ emit) error {
	var rows []labelCount
	if err := db.Raw("SELECT status AS label, COUNT(*) AS n FROM approval_requests GROUP BY status").Scan(&rows).Error; err != nil {
		return err
	}
	counts := byLabel(rows, requestStates)
	for state, n := range counts {
		gauge(descRequests, float64(n), state)
	}
	gauge(descQueue, float64(counts["pending"]+counts["awaiting_second"]))
	now := c.cfg.Now().UTC()
	// ORDER BY ... LIMIT 1 rather than MIN(): SQLite loses the column's type in an aggregate and would hand
	// back text.
	var oldest []struct{ FiledAt time.Time }
	if err := db.Raw("SELECT filed_at FROM approval_requests WHERE status IN ('pending', 'awaiting_second') ORDER BY filed_at LIMIT 1").
		Scan(&oldest).Error; err != nil {
		return err
	}
	age := 0.0
	if len(oldest) == 1 {
		age = max(now.Sub(oldest[0].FiledAt).Seconds(), 0)
	}
	gauge(descOldest, age)
	for _, u := range urgencies {
		due := c.cfg.ReviewDue
		if u == "urgent" {
			due = c.cfg.ReviewDueUrgent
		}
		var n int64
		if err := db.Raw("SELECT COUNT(*) FROM approval_requests WHERE status IN ('pending', 'awaiting_second') AND urgency = ? AND filed_at < ?",
			u, now.Add(-due)).Scan(&n).Error; err != nil {
			return err
		}
		gauge(descOverdue, float64(n), u)
	}
	return nil
}

func (c *Collector) extracts(db *gorm.DB, gauge, _ emit) error {
	// The same precedence as approvals.Extract.State: retrieved, revoked, expired, ready.
	var rows []labelCount
	err := db.Raw(`SELECT CASE WHEN retrieved_at IS NOT NULL THEN 'retrieved' WHEN revoked_at IS NOT NULL THEN 'revoked'
		WHEN expires_at <= ? THEN 'expired' ELSE 'ready' END AS label, COUNT(*) AS n FROM extracts GROUP BY 1`,
		c.cfg.Now().UTC()).Scan(&rows).Error
	if err != nil {
		return err
	}
	for state, n := range byLabel(rows, extractStates) {
		gauge(descExtracts, float64(n), state)
	}
	return nil
}

func (c *Collector) audit(db *gorm.DB, gauge, counter emit) error {
	var head int64
	if err := db.Raw("SELECT seq FROM audit_head WHERE id = 1").Scan(&head).Error; err != nil {
		return err
	}
	counter(descAuditRows, float64(head))
	var held int64
	if err := db.Raw("SELECT COUNT(*) FROM audit_events").Scan(&held).Error; err != nil {
		return err
	}
	gauge(descAuditHeld, float64(held))
	var retrieved int64
	if err := db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.retrieved'").Scan(&retrieved).Error; err != nil {
		return err
	}
	counter(descRetrievals, float64(retrieved))
	// Grouping by the details column: a refusal's details are a handful of fixed codes, so there are few
	// groups, and the reason is read from JSON here rather than with each database's JSON functions.
	var refusals []labelCount
	if err := db.Raw("SELECT details AS label, COUNT(*) AS n FROM audit_events WHERE action = 'extract.refused' GROUP BY details").
		Scan(&refusals).Error; err != nil {
		return err
	}
	reasons := map[string]int64{}
	for _, r := range refusals {
		var d struct{ Reason string }
		reason := "other"
		if json.Unmarshal([]byte(r.Label), &d) == nil && reasonWord.MatchString(d.Reason) {
			reason = d.Reason
		}
		reasons[reason] += r.N
	}
	for reason, n := range reasons {
		counter(descRefusals, float64(n), reason)
	}
	var imports struct{ Complete, Interrupted int64 }
	if err := db.Raw(`SELECT COALESCE(SUM(CASE WHEN details LIKE '%"interrupted":true%' THEN 0 ELSE 1 END), 0) AS complete,
		COALESCE(SUM(CASE WHEN details LIKE '%"interrupted":true%' THEN 1 ELSE 0 END), 0) AS interrupted
		FROM audit_events WHERE action = 'import.run'`).Scan(&imports).Error; err != nil {
		return err
	}
	counter(descImports, float64(imports.Complete), "complete")
	counter(descImports, float64(imports.Interrupted), "interrupted")
	return nil
}
