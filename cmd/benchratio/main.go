// Command benchratio reads `go test -bench` output on stdin and prints every benchmark beside its baseline
// from the same run, as ratios. A comparison is a pair of sub-benchmarks whose names differ only in their last
// element, one of them being "baseline": BenchmarkX/case/baseline and BenchmarkX/case/gateway.
//
// A ratio is gateway ÷ baseline for every metric: above 1 means more time, bytes or allocations per op for
// costs (ns/op, B/op, allocs/op), and more throughput for rates (anything "/s").
//
// Run with -count N, each result is paired with its baseline's run just before it, and each benchmark's
// figures are printed once, as the medians of its N pairs (report).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
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

// report pairs each result with its baseline and prints the ratios. With -count N a benchmark runs N times,
// its sub-benchmarks in order each time (baseline, then the others): each result is paired with its baseline's
// run just before it (or, if the baseline runs after, the first one after), so that the two sides of a ratio
// ran seconds apart, not minutes. Repeated pairs are printed once, as medians: the measured value, the
// baseline, and the ratio (the median of the pairs' ratios, with their range). These machines' speed moves
// within seconds, so one pair's ratio is partly luck; `go test -count 7 … | benchratio` gives the median of 7.
func report(w io.Writer, results []result) error {
	type pairs struct {
		name, metric              string
		measured, baseline, ratio []float64
	}
	var order []*pairs
	byKey := map[string]*pairs{}
	found := false
	for j, r := range results {
		i := strings.LastIndex(r.name, "/")
		if i < 0 {
			continue
		}
		if strings.HasSuffix(r.name, "/baseline") {
			found = true
			continue
		}
		base, ok := nearestBaseline(results, j, r.name[:i]+"/baseline")
		if !ok {
			continue
		}
		for _, m := range r.order {
			b, ok := base.metrics[m]
			if !ok {
				continue
			}
			key := r.name + "\x00" + m
			p := byKey[key]
			if p == nil {
				p = &pairs{name: r.name, metric: m}
				byKey[key] = p
				order = append(order, p)
			}
			p.measured, p.baseline = append(p.measured, r.metrics[m]), append(p.baseline, b)
			if b != 0 {
				p.ratio = append(p.ratio, r.metrics[m]/b)
			}
		}
	}
	if !found {
		return fmt.Errorf("no baseline benchmarks in the input")
	}
	fmt.Fprintf(w, "\n%-64s %-12s %14s %14s %9s\n", "benchmark (beside its baseline, same run)", "metric", "measured", "baseline", "ratio")
	for _, p := range order {
		ratio := "n/a"
		if len(p.ratio) > 0 {
			ratio = fmt.Sprintf("%.2fx", median(p.ratio))
		}
		line := fmt.Sprintf("%-64s %-12s %14s %14s %9s", p.name, p.metric, num(median(p.measured)), num(median(p.baseline)), ratio)
		if n := len(p.measured); n > 1 {
			line += fmt.Sprintf("  medians of %d pairs", n)
			if len(p.ratio) > 0 {
				line += fmt.Sprintf(", ratios %.2fx to %.2fx", slices.Min(p.ratio), slices.Max(p.ratio))
			}
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// nearestBaseline is the result named base that ran last before results[j], or else first after it.
func nearestBaseline(results []result, j int, base string) (result, bool) {
	for k := j - 1; k >= 0; k-- {
		if results[k].name == base {
			return results[k], true
		}
	}
	for k := j + 1; k < len(results); k++ {
		if results[k].name == base {
			return results[k], true
		}
	}
	return result{}, false
}

// median is the middle of v (the mean of the two middle values for an even count); v is sorted in place.
func median(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func num(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
