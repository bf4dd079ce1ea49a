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

// validID says whether s could be an id newID made (32 lower-case hex digits). Ids that come from outside
// (a preparation named in a query string) are checked before any query: PostgreSQL refuses NUL in text.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
