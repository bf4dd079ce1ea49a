package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
)

// Route is one entry of a listener's table. Who says who may call it; routes() wraps the handler with that
// check, so this table is the truth. Every state-changing method also goes through the CSRF check (Origin /
// Sec-Fetch-Site and a token). Tests walk these tables.
type Route struct {
	Method  string
	Path    string
	Who     Access
	Handler echo.HandlerFunc
}

// Access says who may call a route: anyone, anyone signed in, or one role.
type Access string

const (
	// Anyone may call it: health checks, static files, home, sign-in and invitation pages, ceremonies.
	Anyone Access = "anyone"
	// AnySignedIn is any signed-in user of the listener (sign-out).
	AnySignedIn Access = "signed-in"
	// RoleRequester is a remote doctor, on intake.
	RoleRequester Access = identity.RoleRequester
	// RoleOfficer is a data officer, on console.
	RoleOfficer Access = identity.RoleOfficer
	// RoleStaff hands over extracts, on console.
	RoleStaff Access = identity.RoleStaff
	// RoleAdmin administers, on console.
	RoleAdmin Access = identity.RoleAdmin
	// RoleDPO is the data-protection officer, on console.
	RoleDPO Access = identity.RoleDPO
	// OfficerOrDPO is an officer or the data-protection officer, on console: patients' access histories
	// (issue 10), which either prints on the patient's request.
	OfficerOrDPO Access = identity.RoleOfficer + "|" + identity.RoleDPO
	// MetricsScraper is a client address inside --metrics-allow (a Prometheus server cannot sign in with a
	// passkey), or else a signed-in admin. It is for GET /metrics only, which carries counts and no identifier.
	MetricsScraper Access = "metrics-scraper"
)

// allows says whether a signed-in user of role may call a route needing a: its one role, or one of the roles
// an access like OfficerOrDPO names.
func (a Access) allows(role string) bool {
	return a == AnySignedIn || slices.Contains(strings.Split(string(a), "|"), role)
}

// IntakeRoutes is every route of the intake listener: the only one that may face the remote segment. No route
// here reads records, searches patients or tells whether a patient exists.
func (s *Server) IntakeRoutes() []Route {
	h := s.h
	return append([]Route{
		{http.MethodGet, "/", Anyone, h.intakeHome},
		{http.MethodGet, "/healthz", Anyone, h.healthz},
		{http.MethodGet, "/static/*", Anyone, h.static},
		{http.MethodGet, "/home", RoleRequester, h.roleHome},
		// Requests (issue 5): pages and the JSON API share their handlers; the API is in openapi.yaml.
		{http.MethodGet, "/requests", RoleRequester, h.listMyRequests},
		{http.MethodGet, "/requests/new", RoleRequester, h.newRequestPage},
		{http.MethodPost, "/requests", RoleRequester, h.fileRequest},
		{http.MethodGet, "/requests/:id", RoleRequester, h.showMyRequest},
		{http.MethodPost, "/requests/:id/cancel", RoleRequester, h.cancelMyRequest},
		{http.MethodGet, "/api/v1/requests", RoleRequester, h.listMyRequests},
		{http.MethodPost, "/api/v1/requests", RoleRequester, h.fileRequest},
		{http.MethodGet, "/api/v1/requests/:id", RoleRequester, h.showMyRequest},
		{http.MethodPost, "/api/v1/requests/:id/cancel", RoleRequester, h.cancelMyRequest},
		// Extracts released to the requester: list, and retrieve once (POST: the claim changes state).
		{http.MethodGet, "/extracts", RoleRequester, h.listExtracts},
		{http.MethodPost, "/extracts/:id/retrieve", RoleRequester, h.retrieveExtract},
		{http.MethodPost, "/api/v1/extracts/:id/retrieve", RoleRequester, h.retrieveExtract},
	}, authRoutes(h)...)
}

// ConsoleRoutes is every route of the console listener (internal segment only; consoleAllow guards it all).
func (s *Server) ConsoleRoutes() []Route {
	h := s.h
	return append([]Route{
		{http.MethodGet, "/", Anyone, h.consoleHome},
		{http.MethodGet, "/healthz", Anyone, h.healthz},
		{http.MethodGet, "/readyz", Anyone, h.readyz},
		{http.MethodGet, "/static/*", Anyone, h.static},
		{http.MethodGet, "/officer", RoleOfficer, h.roleHome},
		// Review and signed decisions (issue 5).
		{http.MethodGet, "/queue", RoleOfficer, h.showQueue},
		{http.MethodGet, "/review/:id", RoleOfficer, h.showReview},
		{http.MethodPost, "/review/:id/prepare", RoleOfficer, h.prepareDecision},
		{http.MethodPost, "/review/:id/sign", RoleOfficer, h.signDecision},
		// Emergency releases (issue 10): the post-hoc review by a second officer.
		{http.MethodGet, "/emergency-reviews", RoleOfficer, h.showEmergencyReviews},
		{http.MethodPost, "/emergency-reviews/:id", RoleOfficer, h.reviewEmergency},
		{http.MethodGet, "/staff", RoleStaff, h.roleHome},
		{http.MethodGet, "/admin", RoleAdmin, h.roleHome},
		{http.MethodGet, "/dpo", RoleDPO, h.roleHome},
		// A patient's access history (issue 10), printed on the patient's request: the form, and the printing
		// (POST: the identifier stays out of URLs and logs; the domain audits every printing).
		{http.MethodGet, "/history", OfficerOrDPO, h.historyPage},
		{http.MethodPost, "/history", OfficerOrDPO, h.printHistory},
		{http.MethodGet, "/admin/users", RoleAdmin, h.adminUsers},
		{http.MethodPost, "/admin/users/:id/suspend", RoleAdmin, h.suspendUser},
		{http.MethodPost, "/admin/credentials/:id/revoke", RoleAdmin, h.revokeCredential},
		{http.MethodGet, "/admin/invitations", RoleAdmin, h.adminInvitations},
		{http.MethodPost, "/admin/invitations", RoleAdmin, h.createInvitation},
		// Extracts released to staff: list, and retrieve once. The API path differs from intake's: the route
		// tables stay disjoint.
		{http.MethodGet, "/handover", RoleStaff, h.listExtracts},
		{http.MethodPost, "/handover/:id/retrieve", RoleStaff, h.retrieveExtract},
		{http.MethodPost, "/api/v1/handover/:id/retrieve", RoleStaff, h.retrieveExtract},
		// An officer's page of one extract, and its signed actions.
		{http.MethodGet, "/review/:id/extract", RoleOfficer, h.showRequestExtract},
		{http.MethodGet, "/extracts/:id", RoleOfficer, h.showExtract},
		{http.MethodPost, "/extracts/:id/revoke/begin", RoleOfficer, h.beginRevoke},
		{http.MethodPost, "/extracts/:id/revoke/finish", RoleOfficer, h.finishRevoke},
		{http.MethodPost, "/extracts/:id/reissue/begin", RoleOfficer, h.beginReissue},
		{http.MethodPost, "/extracts/:id/reissue/finish", RoleOfficer, h.finishReissue},
		// Patients' restrictions (issue 10): found by identifier (posted, never in a URL), recorded and lifted
		// with the key of an officer or of the data-protection officer.
		{http.MethodGet, "/restrictions", OfficerOrDPO, h.showRestrictionsSearch},
		{http.MethodPost, "/restrictions/find", OfficerOrDPO, h.findRestrictions},
		{http.MethodGet, "/restrictions/:id", OfficerOrDPO, h.showRestrictions},
		{http.MethodPost, "/restrictions/begin", OfficerOrDPO, h.beginRestriction},
		{http.MethodPost, "/restrictions/finish", OfficerOrDPO, h.finishRestriction},
		{http.MethodPost, "/restrictions/:id/lift/begin", OfficerOrDPO, h.beginLift},
		{http.MethodPost, "/restrictions/:id/lift/finish", OfficerOrDPO, h.finishLift},
		// Operating (issue 13): counts for Prometheus, never an identifier; not audited (scraped every few
		// seconds, it would drown the chain), read-only.
		{http.MethodGet, "/metrics", MetricsScraper, h.showMetrics},
	}, authRoutes(h)...)
}

// authRoutes are the sign-in pages and passkey ceremonies, the same on both listeners (each with its own
// relying party, cookies and sessions).
func authRoutes(h *handler) []Route {
	return []Route{
		{http.MethodGet, "/signin", Anyone, h.signInPage},
		{http.MethodGet, "/invite/:token", Anyone, h.invitePage},
		{http.MethodPost, "/auth/register/begin", Anyone, h.registerBegin},
		{http.MethodPost, "/auth/register/finish", Anyone, h.registerFinish},
		{http.MethodPost, "/auth/signin/begin", Anyone, h.signInBegin},
		{http.MethodPost, "/auth/signin/finish", Anyone, h.signInFinish},
		{http.MethodPost, "/auth/signout", AnySignedIn, h.signOut},
	}
}

func (s *Server) routes() {
	// Path parameters are checked against their pattern first: a bad id is 404 before anything sees it.
	for _, r := range s.IntakeRoutes() {
		s.intake.Add(r.Method, r.Path, checkParams(r.Path, s.guard(r.Who, r.Handler)))
	}
	for _, r := range s.ConsoleRoutes() {
		s.console.Add(r.Method, r.Path, checkParams(r.Path, s.guard(r.Who, r.Handler)))
	}
}
