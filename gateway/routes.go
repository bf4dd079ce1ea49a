package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Route is one entry of a listener's table. Who says who may call it; every state-changing method also goes
// through the CSRF check (once sessions exist). Tests walk these tables.
type Route struct {
	Method  string
	Path    string
	Who     Access
	Handler echo.HandlerFunc
}

// Access says who may call a route.
type Access string

const (
	// Anyone may call it: health checks, static files, home and sign-in pages.
	Anyone Access = "anyone"
)

// IntakeRoutes is every route of the intake listener: the only one that may face the remote segment. No route
// here reads records, searches patients or tells whether a patient exists.
func (s *Server) IntakeRoutes() []Route {
	h := s.h
	return []Route{
		{http.MethodGet, "/", Anyone, h.intakeHome},
		{http.MethodGet, "/healthz", Anyone, h.healthz},
		{http.MethodGet, "/static/*", Anyone, h.static},
	}
}

// ConsoleRoutes is every route of the console listener (internal segment only; consoleAllow guards it all).
func (s *Server) ConsoleRoutes() []Route {
	h := s.h
	return []Route{
		{http.MethodGet, "/", Anyone, h.consoleHome},
		{http.MethodGet, "/healthz", Anyone, h.healthz},
		{http.MethodGet, "/readyz", Anyone, h.readyz},
		{http.MethodGet, "/static/*", Anyone, h.static},
	}
}

func (s *Server) routes() {
	for _, r := range s.IntakeRoutes() {
		s.intake.Add(r.Method, r.Path, r.Handler)
	}
	for _, r := range s.ConsoleRoutes() {
		s.console.Add(r.Method, r.Path, r.Handler)
	}
}
