package records

import (
	"regexp"
	"strings"

	"gatewayd/templates"
)

// The printable extract speaks its reader's language: FHIR codes (statuses, criticality) become words, UCUM
// unit codes their printed symbols, and decimal numbers take the language's separator. The FHIR Bundle keeps
// the codes untouched.

// codeWord translates a FHIR code of a known value set ("records.code.<code>"); an unknown code is shown as
// it is rather than hidden.
func codeWord(lang, code string) string {
	if code == "" {
		return ""
	}
	if k := "records.code." + code; templates.Has(k) {
		return templates.T(lang, k)
	}
	return code
}

// conceptWord is a CodeableConcept in words: its text, a coding's display, or its code translated.
func conceptWord(lang string, c *concept) string {
	if c == nil {
		return ""
	}
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return codeWord(lang, cd.Code)
		}
	}
	return ""
}

var (
	ucumAnnotation = regexp.MustCompile(`\{[^}]*\}`)
	ucumPower      = regexp.MustCompile(`10\*(-?\d+)`)
	ucumMicro      = regexp.MustCompile(`(^|[/.])u([A-Za-z])`)
	ucumSquare     = regexp.MustCompile(`([a-zA-Z])2\b`)
	ucumCube       = regexp.MustCompile(`([a-zA-Z])3\b`)
	ucumSymbols    = strings.NewReplacer("Cel", "°C", "[degF]", "°F", "mm[Hg]", "mmHg", "[lb_av]", "lb", "[in_i]",
		"in", "[IU]", "UI", "[iU]", "UI", "[ft_i]", "ft", "[oz_av]", "oz", "[pH]", "pH")
	superscripts = strings.NewReplacer("-", "⁻", "0", "⁰", "1", "¹", "2", "²", "3", "³", "4", "⁴", "5", "⁵", "6", "⁶",
		"7", "⁷", "8", "⁸", "9", "⁹")
)

// unitDisplay prints a UCUM unit code as a reader expects it: "Cel" → "°C", "mm[Hg]" → "mmHg", "10*3/uL" →
// "10³/µL", "kg/m2" → "kg/m²"; annotations ("{score}", "{1.73_m2}") are UCUM comments and are dropped
// (a score has no unit).
//
// Each rewrite runs only when its pattern can match (most units, "cm", "kg", "%", have none): a regexp's
// ReplaceAllString or a Replacer allocates even when nothing matches, and this runs for every result of a
// printable page.
func unitDisplay(unit string) string {
	u := unit
	if strings.Contains(u, "{") {
		u = ucumAnnotation.ReplaceAllString(u, "")
	}
	u = strings.TrimSuffix(strings.ReplaceAll(u, "//", "/"), "/")
	if u == "1" {
		return ""
	}
	if strings.Contains(u, "Cel") || strings.Contains(u, "[") {
		u = ucumSymbols.Replace(u)
	}
	if strings.Contains(u, "10*") {
		u = ucumPower.ReplaceAllStringFunc(u, func(m string) string { return "10" + superscripts.Replace(m[3:]) })
	}
	if strings.Contains(u, "u") {
		u = ucumMicro.ReplaceAllString(u, "${1}µ$2")
	}
	if strings.Contains(u, "2") {
		u = ucumSquare.ReplaceAllString(u, "$1²")
	}
	if strings.Contains(u, "3") {
		u = ucumCube.ReplaceAllString(u, "$1³")
	}
	return strings.TrimSpace(u)
}

// decimal writes a number with the language's decimal separator.
func decimal(lang, v string) string {
	if lang == "fr" {
		return strings.Replace(v, ".", ",", 1)
	}
	return v
}
