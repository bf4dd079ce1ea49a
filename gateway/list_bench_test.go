package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// BenchmarkFileAndListUnderLoad: 32 clients, each a requester with a history of its own, file a request and
// list their requests (first page, JSON) in a loop for 60 s (GATEWAY_BENCH_SECONDS to change it). "history"
// starts from 250 requests per requester, "baseline" from 10: with paged lists the p99 should not grow with
// the history, so benchratio's p99 ratio should stay near 1.
func BenchmarkFileAndListUnderLoad(b *testing.B) {
	seconds := 60
	if s, err := strconv.Atoi(os.Getenv("GATEWAY_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, tc := range []struct {
			name  string
			prior int
		}{{"baseline", 10}, {"history", 250}} {
			b.Run(dialect+"/clients=32/"+tc.name, func(b *testing.B) {
				var db *gorm.DB
				if dialect == "sqlite" {
					db = storetest.NewSQLite(b)
				} else {
					db = storetest.NewPostgres(b)
				}
				s := benchServer(b, db)
				srv := httptest.NewServer(s.Intake())
				defer srv.Close()
				hdrs := make([]http.Header, 32)
				for i := range hdrs {
					ns, _ := identitytest.Register(b, s.Identity(), identity.RoleRequester)
					hdrs[i] = http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"},
						"Origin": {s.cfg.PublicIntakeURL}, csrfHeader: {s.h.csrfFor("session:" + ns.ID)},
						"Cookie": {"gw_session_intake=" + ns.Token}}
				}
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(hdrs)}}
				defer client.CloseIdleConnections()
				body := asJSON(validFiling(busterID))
				// A 503 (the database server, shared on this machine, out of connections) is counted, not
				// fatal: the benchmark reports how many answers were "try again later".
				var unavailable atomic.Int64
				call := func(h http.Header, method, path string) error {
					var rd io.Reader
					if method == http.MethodPost {
						rd = strings.NewReader(body)
					}
					req, _ := http.NewRequest(method, srv.URL+path, rd)
					req.Header = h.Clone()
					res, err := client.Do(req)
					if err != nil {
						return err
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode == http.StatusServiceUnavailable {
						unavailable.Add(1)
						return nil
					}
					if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
						return fmt.Errorf("%s %s: status %d", method, path, res.StatusCode)
					}
					return nil
				}
				// The history, filed by each requester.
				each(b, hdrs, func(h http.Header) error {
					for range tc.prior {
						if err := call(h, http.MethodPost, "/api/v1/requests"); err != nil {
							return err
						}
					}
					return nil
				})
				var (
					mu           sync.Mutex
					files, lists []time.Duration
				)
				b.ResetTimer()
				start := time.Now()
				deadline := start.Add(time.Duration(seconds) * time.Second)
				each(b, hdrs, func(h http.Header) error {
					var f, l []time.Duration
					for time.Now().Before(deadline) {
						t0 := time.Now()
						if err := call(h, http.MethodPost, "/api/v1/requests"); err != nil {
							return err
						}
						t1 := time.Now()
						if err := call(h, http.MethodGet, "/api/v1/requests"); err != nil {
							return err
						}
						f, l = append(f, t1.Sub(t0)), append(l, time.Since(t1))
					}
					mu.Lock()
					files, lists = append(files, f...), append(lists, l...)
					mu.Unlock()
					return nil
				})
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(len(files)+len(lists))/elapsed.Seconds(), "req/s")
				b.ReportMetric(p99(files), "file-p99-ms")
				b.ReportMetric(p99(lists), "list-p99-ms")
				b.ReportMetric(float64(unavailable.Load()), "503s")
			})
		}
	}
}

// each runs fn once per client header, concurrently, and fails the benchmark on the first error.
func each(b *testing.B, hdrs []http.Header, fn func(http.Header) error) {
	var wg sync.WaitGroup
	errs := make(chan error, len(hdrs))
	for _, h := range hdrs {
		wg.Go(func() {
			if err := fn(h); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

func p99(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[int(0.99*float64(len(d)-1))]) / float64(time.Millisecond)
}
