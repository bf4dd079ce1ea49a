package gateway

import (
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gatewayd/gateway/metrics"
)

// newMetricsHandler serves the Prometheus text format from a registry of the gateway's own collector. Errors
// of a scrape go to the log, with no detail in the answer.
func (h *handler) newMetricsHandler() echo.HandlerFunc {
	reg := metrics.Registry(metrics.New(metrics.Config{DB: h.db, Now: h.now,
		ReviewDue: h.cfg.ReviewDue, ReviewDueUrgent: h.cfg.ReviewDueUrgent}))
	return echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// showMetrics answers GET /metrics.
func (h *handler) showMetrics(c echo.Context) error { return h.metrics(c) }
