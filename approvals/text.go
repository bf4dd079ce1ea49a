package approvals

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CodeControl is the FieldError code of free text holding NUL, another control character or invalid UTF-8.
const CodeControl = "control_chars"

// normalizeText makes a browser's CRLF line breaks plain newlines and trims the ends.
func normalizeText(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// cleanText says whether free text (a justification, a denial reason) is valid UTF-8 without control
// characters other than newline and tab: what is sealed and later shown or signed must be plain text.
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return r != '\n' && r != '\t' && unicode.IsControl(r)
	})
}
