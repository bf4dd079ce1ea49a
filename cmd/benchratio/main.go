// Command benchratio reads `go test -bench` output on stdin and prints every benchmark beside its baseline
// from the same run, as ratios. A comparison is a pair of sub-benchmarks whose names differ only in their last
// element, one of them being "baseline": BenchmarkX/case/baseline and BenchmarkX/case/gateway.
//
// A ratio is gateway ÷ baseline for every metric: above 1 means more time, bytes or allocations per op for
// costs (ns/op, B/op, allocs/op), and more throughput for rates (anything "/s").
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type result struct {
	name    string
	metrics map[string]float64
	order   []string
}

// gomaxprocsSuffix is the "-8" go test appends to benchmark names.
var gomaxprocsSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	results := parse(os.Stdin)
	if err := report(os.Stdout, results); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

func parse(r io.Reader) []result {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		res := result{name: gomaxprocsSuffix.ReplaceAllString(f[0], ""), metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res.metrics[f[i+1]] = v
			res.order = append(res.order, f[i+1])
		}
		out = append(out, res)
	}
	return out
}

func report(w io.Writer, results []result) error {
	baselines := map[string]result{}
	for _, r := range results {
		if prefix, ok := strings.CutSuffix(r.name, "/baseline"); ok {
			baselines[prefix] = r
		}
	}
	if len(baselines) == 0 {
		return fmt.Errorf("no baseline benchmarks in the input")
	}
	var lines []string
	for _, r := range results {
		i := strings.LastIndex(r.name, "/")
		if i < 0 || strings.HasSuffix(r.name, "/baseline") {
			continue
		}
		base, ok := baselines[r.name[:i]]
		if !ok {
			continue
		}
		for _, m := range r.order {
			b, ok := base.metrics[m]
			if !ok {
				continue
			}
			ratio := "n/a"
			if b != 0 {
				ratio = fmt.Sprintf("%.2fx", r.metrics[m]/b)
			}
			lines = append(lines, fmt.Sprintf("%-64s %-12s %14s %14s %9s", r.name, m, num(r.metrics[m]), num(b), ratio))
		}
	}
	fmt.Fprintf(w, "\n%-64s %-12s %14s %14s %9s\n", "benchmark (beside its baseline, same run)", "metric", "measured", "baseline", "ratio")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return nil
}

func num(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
