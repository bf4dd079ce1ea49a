package gateway

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxBody bounds every request body on both listeners. The largest legitimate body is a filing (32 KiB, see
// maxFilingBody) or a WebAuthn ceremony's JSON (64 KiB, maxCeremonyBody); forms are smaller still.
const maxBody = 64 << 10

var (
	errBodyTooLarge = errors.New("request body over the limit")
	errMultipart    = errors.New("multipart body: no route takes one")
)

// limitBody runs before routing, so before anything reads a body (the CSRF check's form parse included): a
// declared body over maxBody is refused with 413 without reading a byte of it, a multipart body (which no
// route takes, and whose parse spills to temporary files) with 415, and any other body is cut at maxBody.
// The refusals close the connection, so the server does not drain what the client keeps sending.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > maxBody {
			c.Response().Header().Set("Connection", "close")
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge).SetInternal(errBodyTooLarge)
		}
		if ct := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type"))); strings.HasPrefix(ct, "multipart/") {
			c.Response().Header().Set("Connection", "close")
			return echo.NewHTTPError(http.StatusUnsupportedMediaType).SetInternal(errMultipart)
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(c.Response(), r.Body, maxBody)
		}
		return next(c)
	}
}

// Patterns of path parameters. Ids are 128-bit random values in lower-case hex; a credential id is the
// authenticator's (at most 1023 bytes) in base64url; an invitation token is 256 bits in base64url.
var (
	hexIDPattern        = regexp.MustCompile(`^[0-9a-f]{32}$`)
	credentialIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,1000}[A-Za-z0-9_-]{0,364}$`) // 16 to 1364 characters
	tokenPattern        = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// paramPattern says what the parameter name of a route path must look like.
func paramPattern(path, name string) *regexp.Regexp {
	switch {
	case name == "token":
		return tokenPattern
	case strings.HasPrefix(path, "/admin/credentials/"):
		return credentialIDPattern
	default:
		return hexIDPattern
	}
}

// checkParams answers 404 when a path parameter does not match its pattern, before the role check, the
// handler, the log line or an audit row sees it: only checked ids go further.
func checkParams(path string, next echo.HandlerFunc) echo.HandlerFunc {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, ":") {
			names = append(names, seg[1:])
		}
	}
	if len(names) == 0 {
		return next
	}
	return func(c echo.Context) error {
		for _, n := range names {
			if !paramPattern(path, n).MatchString(c.Param(n)) {
				return echo.ErrNotFound
			}
		}
		return next(c)
	}
}
