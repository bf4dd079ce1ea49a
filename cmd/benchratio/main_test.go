package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReportPairsBaselines(t *testing.T) {
	in := `goos: linux
BenchmarkAudit/sqlite/writers=1/baseline-2   	    1000	     20000 ns/op	  50000 rows/s
BenchmarkAudit/sqlite/writers=1/chain-2      	    1000	     40000 ns/op	  25000 rows/s
BenchmarkLonely-2                            	    1000	     10 ns/op
PASS
`
	var out bytes.Buffer
	if err := report(&out, parse(strings.NewReader(in))); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"BenchmarkAudit/sqlite/writers=1/chain", "ns/op", "2.00x", "rows/s", "0.50x"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Lonely") {
		t.Errorf("a benchmark without baseline was reported:\n%s", s)
	}
}

func TestReportWithoutBaselineFails(t *testing.T) {
	if err := report(&bytes.Buffer{}, parse(strings.NewReader("BenchmarkX-2 10 5 ns/op\n"))); err == nil {
		t.Fatal("want an error when no baseline is present")
	}
}

// With -count, each result is paired with the baseline run just before it, and the pairs are printed once as
// medians with the range of their ratios: here the req/s ratios are 0.50, 0.33 and 0.25 (the baseline moved
// from run to run), so the median is 0.33x, where pairing every run with the last baseline gave 0.25x thrice.
func TestReportMediansOfRepeatedPairs(t *testing.T) {
	in := `BenchmarkF/c=64/baseline-2 100 1 ns/op 1000 req/s
BenchmarkF/c=64/gateway-2  100 1 ns/op 500 req/s
BenchmarkF/c=64/baseline-2 100 1 ns/op 1500 req/s
BenchmarkF/c=64/gateway-2  100 1 ns/op 500 req/s
BenchmarkF/c=64/baseline-2 100 1 ns/op 2000 req/s
BenchmarkF/c=64/gateway-2  100 1 ns/op 500 req/s
`
	var out bytes.Buffer
	if err := report(&out, parse(strings.NewReader(in))); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "req/s") {
			line = l
		}
	}
	f := strings.Fields(line)
	if len(f) < 5 || f[2] != "500" || f[3] != "1500" || f[4] != "0.33x" || !strings.Contains(line, "medians of 3 pairs, ratios 0.25x to 0.50x") {
		t.Fatalf("req/s line = %q; want measured 500, baseline 1500, ratio 0.33x (median of 0.50, 0.33, 0.25), 3 pairs", line)
	}
	if n := strings.Count(out.String(), "BenchmarkF/c=64/gateway"); n != 2 { // ns/op and req/s, once each
		t.Fatalf("%d lines for the gateway; want one per metric:\n%s", n, out.String())
	}
}
