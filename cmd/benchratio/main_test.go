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
