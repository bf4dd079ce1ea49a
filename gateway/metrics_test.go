package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// TestMetricsAfterFullFlow scrapes /metrics after imports, filings, decisions, a retrieval and a refusal: the
// values are what the flow left, every label of the gateway's metrics is a fixed word, and no id, name or
// free text of the flow appears anywhere in the answer.
func TestMetricsAfterFullFlow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		ctx := context.Background()

		_, retrieved := f.approve(approvals.ToRequester, time.Hour)
		f.approve(approvals.ToStaff, time.Hour)
		if w := f.retrieve("requester", retrieved, formatFHIR); w.Code != http.StatusOK {
			t.Fatalf("retrieve: %d", w.Code)
		}
		if w := f.retrieve("requester", retrieved, formatFHIR); w.Code == http.StatusOK {
			t.Fatal("second retrieval served")
		}
		urgent, err := f.domain.FileRequest(ctx, approvals.Filing{RequesterID: f.users["requester2"].id, Patient: samplePatient,
			Categories: []approvals.Category{approvals.Allergies}, Purpose: approvals.PurposeSecondOpinion,
			Justification: "Unusual reaction, please check quickly.", Urgency: approvals.Urgent, Delivery: approvals.ToRequester})
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Set(f.clock.Now().Add(2 * time.Hour)) // the urgent request is now overdue, and both extracts expired
		// Sessions of two hours ago have gone idle: an admin and an officer sign in now.
		for _, role := range []string{identity.RoleAdmin, identity.RoleOfficer} {
			ns, _ := identitytest.Register(t, f.srv.Identity(), role)
			f.users[role] = testUser{id: ns.User.ID, listener: Console, cookie: "gw_session_console=" + ns.Token}
		}

		w := f.get("admin", "/metrics")
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("admin scrape: %d %s", w.Code, w.Header().Get("Content-Type"))
		}
		body := w.Body.Bytes()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("parse the scrape: %v", err)
		}
		for _, want := range []struct {
			name   string
			labels string
			value  float64
		}{
			{"gatewayd_requests", "state=approved", 2},
			{"gatewayd_requests", "state=pending", 1},
			{"gatewayd_queue_length", "", 1},
			{"gatewayd_queue_oldest_age_seconds", "", 7200},
			{"gatewayd_reviews_overdue", "urgency=urgent", 1},
			{"gatewayd_reviews_overdue", "urgency=routine", 0},
			{"gatewayd_extracts", "state=retrieved", 1},
			{"gatewayd_extracts", "state=expired", 1},
			{"gatewayd_extracts", "state=ready", 0},
			{"gatewayd_extract_retrievals_total", "", 1},
			{"gatewayd_extract_refusals_total", "reason=already_retrieved", 1},
			{"gatewayd_import_runs_total", "outcome=complete", 1},
			{"gatewayd_database_up", "", 1},
		} {
			if got, ok := metricValue(families, want.name, want.labels); !ok || got != want.value {
				t.Errorf("%s{%s} = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
			}
		}
		var auditRows int64
		db.Raw("SELECT COUNT(*) FROM audit_events").Scan(&auditRows)
		if got, _ := metricValue(families, "gatewayd_audit_rows_held", ""); got != float64(auditRows) || auditRows == 0 {
			t.Errorf("audit rows held %v, database has %d", got, auditRows)
		}
		if rtt, ok := metricValue(families, "gatewayd_database_round_trip_seconds", ""); !ok || rtt <= 0 {
			t.Errorf("round trip %v", rtt)
		}

		// Every label of the gateway's own metrics is a fixed lower-case word.
		word := regexp.MustCompile(`^[a-z_]+$`)
		for name, fam := range families {
			if !strings.HasPrefix(name, "gatewayd_") {
				continue
			}
			for _, m := range fam.Metric {
				for _, l := range m.Label {
					if !word.MatchString(l.GetValue()) {
						t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
		// Nothing of the flow's ids, names or free text anywhere in the answer.
		secrets := []string{samplePatient.Value, sampleFamily, "Unusual reaction", "Follow-up", urgent.ID, retrieved}
		for _, q := range []string{"SELECT id FROM users", "SELECT id FROM approval_requests", "SELECT id FROM extracts",
			"SELECT id FROM record_patients", "SELECT id FROM approval_decisions", "SELECT DISTINCT id FROM record_entries"} {
			var ids []string
			if err := db.Raw(q).Scan(&ids).Error; err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, ids...)
		}
		for _, s := range secrets {
			if s != "" && bytes.Contains(body, []byte(s)) {
				t.Errorf("the scrape holds %q", s)
			}
		}

		// Who may scrape: not anonymous, not another role; a client inside --metrics-allow without a session.
		anon := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		anon.Header.Set("Accept", "application/json")
		if w := f.srv.call(Console, anon); w.Code != http.StatusUnauthorized {
			t.Errorf("anonymous scrape: %d", w.Code)
		}
		if w := f.get("officer", "/metrics"); w.Code != http.StatusForbidden {
			t.Errorf("officer scrape: %d", w.Code)
		}
		f.srv.cfg.MetricsAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		anon = httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if w := f.srv.call(Console, anon); w.Code != http.StatusOK {
			t.Errorf("allowed scraper: %d", w.Code)
		}
	})
}

// metricValue finds the gauge or counter of a family whose labels are exactly labels ("k=v", or "" for none).
func metricValue(families map[string]*dto.MetricFamily, name, labels string) (float64, bool) {
	fam, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") != labels {
			continue
		}
		if m.Gauge != nil {
			return m.Gauge.GetValue(), true
		}
		if m.Counter != nil {
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}
