package records

import (
	"strings"
	"testing"
)

// unitDisplayEveryRewrite is unitDisplay running every rewrite whatever the unit, as it did before it skipped
// those that cannot match.
func unitDisplayEveryRewrite(unit string) string {
	u := ucumAnnotation.ReplaceAllString(unit, "")
	u = strings.TrimSuffix(strings.ReplaceAll(u, "//", "/"), "/")
	if u == "1" {
		return ""
	}
	u = ucumSymbols.Replace(u)
	u = ucumPower.ReplaceAllStringFunc(u, func(m string) string { return "10" + superscripts.Replace(m[3:]) })
	u = ucumMicro.ReplaceAllString(u, "${1}µ$2")
	u = ucumSquare.ReplaceAllString(u, "$1²")
	u = ucumCube.ReplaceAllString(u, "$1³")
	return strings.TrimSpace(u)
}

// FuzzUnitDisplay: skipping the rewrites that cannot match changes no unit's display.
func FuzzUnitDisplay(f *testing.F) {
	for _, u := range []string{"", "1", "cm", "%", "Cel", "[degF]", "mm[Hg]", "10*3/uL", "10*-3", "kg/m2", "cm3", "{score}",
		"mL/min/{1.73_m2}", "u[IU]/mL", "ug/dL", "/uL", ".uL", "[lb_av]", "[in_i]", "[pH]", "mg//dL/", " kg ", "{a}1", "m2.s3"} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, unit string) {
		if got, want := unitDisplay(unit), unitDisplayEveryRewrite(unit); got != want {
			t.Fatalf("%q: %q, every rewrite gives %q", unit, got, want)
		}
	})
}
