package main

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
)

// runOperatingJobs runs, beside the listeners and until ctx is done, the linking of audit rows a stopped
// process left unlinked (every audit.LinkInterval), the walk of the whole audit chain (at start and every
// audit.WalkInterval), the audit retention purge (every
// --jobs-interval; it takes a database lock, so several instances may run it) and, with --syslog, the
// forwarding of each new audit row to the local syslog. It returns when both have stopped.
func (a *app) runOperatingJobs(ctx context.Context, db *gorm.DB) {
	var wg sync.WaitGroup
	wg.Go(func() {
		// Rows are linked into the audit chain right after their commit; a process that stopped in between
		// (of this instance or another, or a command) leaves them to this, well within audit.LinkBound.
		t := time.NewTicker(audit.LinkInterval)
		defer t.Stop()
		for {
			if n, err := audit.Unlinked(ctx, db); err == nil && n > 0 {
				if _, err := audit.Link(ctx, db); err != nil && ctx.Err() == nil {
					a.log.Error("audit link", "error", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Go(func() {
		// The whole audit chain walked at start and every audit.WalkInterval: printings of access histories
		// then walk only the rows linked since (gateway/audit/verified.go), and a changed row no printing cites
		// is found here.
		t := time.NewTicker(audit.WalkInterval)
		defer t.Stop()
		for {
			switch res, err := audit.Walk(ctx, db); {
			case err != nil && ctx.Err() == nil:
				a.log.Error("audit chain walk", "error", err)
			case err == nil:
				a.log.Info("audit chain walked", "rows", res.Rows)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	if a.cfg.AuditRetentionMonths > 0 {
		wg.Go(func() {
			t := time.NewTicker(a.cfg.JobsInterval)
			defer t.Stop()
			for {
				now := time.Now()
				res, err := audit.Purge(ctx, db, a.cfg.AuditCutoff(now), now, "system")
				switch {
				case err != nil && ctx.Err() == nil:
					a.log.Error("audit retention", "error", err)
				case res.Purged > 0:
					a.log.Info("audit retention purged rows", "rows", res.Purged, "checkpoint_seq", res.Checkpoint.Seq)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	if a.cfg.Syslog != "" {
		wg.Go(func() {
			// A second is short enough for a SIEM and costs one indexed query when nothing happened.
			audit.NewForwarder(db, a.cfg.Syslog).Run(ctx, time.Second, func(err error) {
				a.log.Error("audit to syslog", "error", err)
			})
		})
	}
	wg.Wait()
}
