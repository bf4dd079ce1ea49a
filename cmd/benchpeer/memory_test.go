package benchpeer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// TestBenchPeerMemory (make bench-peer) measures the server, a `gatewayd serve` child process, while it
// retrieves extracts one at a time: its peak RSS (VmHWM, reset through /proc/<pid>/clear_refs before each
// kind) for a 100-entry extract and for the extract of the largest sample bundle (all categories), which must
// stay within 2x (flat memory: entries are streamed from one query); and the 2,000-entry extract's MB/s beside
// the same bytes served from memory (the ceiling), medians of interleaved rounds, with the peak RSS of those
// retrievals.
//
// Profiles of the retrieval path: `go test -run '^$' -bench 'BenchmarkRender' -cpuprofile cpu.out
// -memprofile mem.out ./gateway/records/ && go tool pprof -top cpu.out` (and -sample_index=alloc_space mem.out).
func TestBenchPeerMemory(t *testing.T) {
	if os.Getenv("GATEWAY_BENCH_PEER") != "1" {
		t.Skip("make bench-peer sets GATEWAY_BENCH_PEER=1")
	}
	bin := buildGatewayd(t)
	data := t.TempDir()
	small, smallID := syntheticBundle(t, data, "hundred", 100)
	big, bigID := syntheticBundle(t, data, "two-thousand", 2000)
	rounds := envCount(t, "BENCH_PEER_ROUNDS", defaultRounds)
	const perRound = 4 // 2,000-entry retrievals a round
	sets := []extractSet{{small, smallID, 5}, {big, bigID, 1 + rounds*perRound}}
	largest := largestSample()
	if largest != "" {
		sets = append(sets, extractSet{largest, approvals.Identifier{System: "https://github.com/synthetichealth/synthea",
			Value: uuidInName.FindString(filepath.Base(largest))}, 5})
	} else {
		t.Log("no /work/shared/data/fhir: the largest sample bundle is not measured")
	}
	for _, dbName := range databases() {
		dir := t.TempDir()
		dsn := filepath.Join(dir, "gateway.db")
		if dbName == "postgres" {
			dsn = storetest.PostgresDSN(t)
		}
		srv, ids, _ := prepare(t, bin, dir, dsn, sets...)
		pid := srv.cmd.Process.Pid
		client := &http.Client{}
		measure := func(name string, ids []string) (int, int64) {
			resetPeak(t, pid)
			size := 0
			for _, id := range ids {
				b, code, err := srv.fetch(client, id)
				if err != nil || code != http.StatusOK {
					t.Fatalf("%s: %d %v", name, code, err)
				}
				size = len(b)
			}
			return size, peakRSS(t, pid)
		}
		size100, peak100 := measure("100 entries", ids[0])
		fmt.Printf("%-9s peak RSS retrieving a 100-entry extract (%d bytes): %.1f MB\n", dbName, size100, float64(peak100)/1e6)
		if largest != "" {
			size, peak := measure("largest", ids[2])
			fmt.Printf("%-9s peak RSS retrieving the largest sample bundle's extract (%s, %d bytes): %.1f MB, %.2fx the 100-entry extract's\n",
				dbName, filepath.Base(largest)[:strings.Index(filepath.Base(largest), "_")], size, float64(peak)/1e6, float64(peak)/float64(peak100))
			if float64(peak) > 2*float64(peak100) {
				t.Errorf("%s: peak RSS %.1f MB for the largest extract, above 2x the 100-entry extract's %.1f MB", dbName,
					float64(peak)/1e6, float64(peak100)/1e6)
			}
		}
		// The 2,000-entry extract: retrievals/s and MB/s at c = 1, beside the ceiling serving the same bytes, in
		// rounds (a round's retrievals, then as many requests to the ceiling): the medians.
		body, code, err := srv.fetch(client, ids[1][0])
		if err != nil || code != http.StatusOK {
			t.Fatalf("2,000 entries: %d %v", code, err)
		}
		ceiling := startCeiling(t, body)
		resetPeak(t, pid)
		var rates, mbs, ceilings, ratios []float64
		var cpu time.Duration
		for r := range rounds {
			ids := ids[1][1+r*perRound : 1+(r+1)*perRound]
			cpu0 := cpuTime(t, pid)
			g := run(t, 1, ids, func(c *http.Client, id string) (int, error) { return srv.retrieve(c, id) })
			cpu += cpuTime(t, pid) - cpu0
			m := run(t, 1, ids, func(c *http.Client, _ string) (int, error) { return get(c, ceiling) })
			rates, mbs, ceilings = append(rates, g.perSec), append(mbs, g.mbPerSec), append(ceilings, m.mbPerSec)
			ratios = append(ratios, g.mbPerSec/m.mbPerSec)
		}
		peak2000 := peakRSS(t, pid)
		fmt.Printf("%-9s 2,000-entry extract (%d bytes), medians of %d rounds: %.1f retrievals/s, %.1f MB/s vs ceiling %.0f MB/s (ratio %.3f, rounds %.3f to %.3f), peak RSS %.1f MB, server CPU %.2f ms/retrieval\n",
			dbName, len(body), rounds, median(rates), median(mbs), median(ceilings), median(ratios), slices.Min(ratios), slices.Max(ratios),
			float64(peak2000)/1e6, ms(cpu)/float64(rounds*perRound))
		srv.stop(t)
	}
}

// largestSample is the biggest bundle of the shared sample data, or "" without it (tests never need it).
func largestSample() string {
	files, _ := filepath.Glob("/work/shared/data/fhir/synthea-r4-bundles/*.json")
	best, size := "", int64(0)
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	return best
}

// syntheticBundle writes a bundle of one Patient and n Observations of about 1 KB (results with a short
// comment), and returns its path and the patient's identifier.
func syntheticBundle(t *testing.T, dir, name string, n int) (string, approvals.Identifier) {
	t.Helper()
	id := approvals.Identifier{System: "urn:bench", Value: name}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:p-" + name, "resource": map[string]any{"resourceType": "Patient",
		"id": "p-" + name, "identifier": []any{map[string]any{"system": id.System, "value": id.Value}}, "gender": "female",
		"birthDate": "1970-01-01", "name": []any{map[string]any{"family": "Synthetic", "given": []any{"Bench"}}}}}}
	note := strings.Repeat("Reviewed with the patient. ", 25)
	for i := range n {
		entries = append(entries, map[string]any{"fullUrl": fmt.Sprintf("urn:uuid:o-%s-%d", name, i), "resource": map[string]any{
			"resourceType": "Observation", "id": fmt.Sprintf("o-%s-%d", name, i), "status": "final",
			"subject":           map[string]any{"reference": "urn:uuid:p-" + name},
			"code":              map[string]any{"text": "Body Height", "coding": []any{map[string]any{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}}},
			"effectiveDateTime": time.Date(2000, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339),
			"valueQuantity":     map[string]any{"value": 150 + float64(i%50)/3, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
			"note":              []any{map[string]any{"text": note}}}})
	}
	raw, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, id
}

// resetPeak sets the process's peak RSS (VmHWM) back to its current RSS.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

// peakRSS reads the process's peak RSS (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
