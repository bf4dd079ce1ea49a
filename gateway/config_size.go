package gateway

import (
	"fmt"
	"strconv"
	"strings"
)

// sizeValue is a byte count flag that also reads KiB, MiB and GiB ("256MiB").
type sizeValue struct{ p *int64 }

func newSizeValue(p *int64, def int64) *sizeValue {
	*p = def
	return &sizeValue{p}
}

func (v *sizeValue) Type() string { return "bytes" }

func (v *sizeValue) String() string {
	if v.p == nil {
		return "0"
	}
	n := *v.p
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (v *sizeValue) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, suffix)), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size (e.g. 268435456 or 256MiB)", s)
	}
	*v.p = n * mult
	return nil
}
