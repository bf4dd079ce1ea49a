// Package identity holds the people of the gateway and how they prove who they are: users with one role,
// one-time invitations, passkeys (WebAuthn, through go-webauthn), the ceremonies between a begin and a finish,
// and server-side sessions. It knows no HTTP framework and never imports approvals or gateway; the gateway
// wires it into the listeners.
//
// # Writes that do not wait for the disk (issue 15)
//
// On PostgreSQL three kinds of write commit without waiting for their WAL flush (store.NoFlushWaitJoin): a
// ceremony's row (a registration's or a signature's: written at begin, consumed at finish; a sign-in's state
// is not stored, it is sealed in its id, signin_ceremony.go, and only its use is recorded), a session's
// last-seen time, and a sign-in's write (the ceremony recorded as used, the key's sign count, the session and
// its audit row, together: one statement). Each may be lost by a crash, and only with everything committed
// after it that was not flushed either:
//   - a ceremony lost: its finish fails and the user starts again; one brought back after its consumption
//     comes back with no trace of its finish (a sign-in records its use in the write that opens the session,
//     so both are lost or neither; a failed finish's record of use comes after everything it read, and losing
//     it gives back an attempt that wrote nothing, within the ceremony's few minutes);
//   - a last-seen time lost: the session looks idle a little earlier, never later;
//   - a sign-in lost: ceremony consumption, session, audit row and counter are lost together (one statement;
//     if the audit row cannot be written there is no session, as before: fail closed), and the user signs in
//     again. Whatever is done under the session later commits synchronously, which flushes the sign-in first
//     (WAL is flushed in order): no audited action can exist whose sign-in is missing.
//
// Registration, sign-out, suspension, revocation and every decision's key use commit synchronously, as before.
package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"
)

// Listener names; a role belongs to exactly one of them.
const (
	Intake  = "intake"
	Console = "console"
)

// Roles. A person has exactly one.
const (
	RoleRequester = "requester"
	RoleOfficer   = "officer"
	RoleStaff     = "staff"
	RoleAdmin     = "admin"
	// RoleDPO is the data-protection officer: prints patients' access histories and records their
	// restrictions, signed with a hardware key like an officer's decisions.
	RoleDPO = "dpo"
)

// Roles lists every role, in the order pages show them.
var Roles = []string{RoleRequester, RoleOfficer, RoleStaff, RoleAdmin, RoleDPO}

// SignsWithKey says whether a role signs what it decides with its hardware key (officers' decisions, the
// data-protection officer's restrictions): such a role registers with verifiable attestation and its key's
// sign counter must move forward.
func SignsWithKey(role string) bool { return role == RoleOfficer || role == RoleDPO }

// User statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Errors callers branch on. Their text is for logs; pages show a generic message.
var (
	ErrInvalidRole        = errors.New("unknown role")
	ErrInvitationInvalid  = errors.New("invitation unknown, used, expired or for the other listener")
	ErrCeremonyNotFound   = errors.New("ceremony unknown or already used")
	ErrCeremonyExpired    = errors.New("ceremony expired")
	ErrVerification       = errors.New("passkey verification failed")
	ErrHardwareKeyNeeded  = errors.New("officers must use a hardware security key with verifiable attestation")
	ErrCounterWentBack    = errors.New("signature counter did not increase: possible cloned authenticator")
	ErrUnknownCredential  = errors.New("credential unknown or revoked")
	ErrUserSuspended      = errors.New("user suspended")
	ErrWrongListener      = errors.New("this account belongs to the other listener")
	ErrNoSession          = errors.New("no valid session")
	ErrNotFound           = errors.New("not found")
	ErrNoTrustAnchors     = errors.New("no attestation trust anchors configured (--attestation-roots)")
	ErrUnknownListener    = errors.New("unknown listener")
	ErrBadDisplayName     = errors.New("display name must be 1 to 200 characters")
	ErrBadProfessionalID  = errors.New("professional identifier must be at most 64 characters")
	ErrSignatureNotForYou = errors.New("ceremony belongs to another user")
)

// ListenerFor says where a role signs in: requesters on intake, everyone else on console.
func ListenerFor(role string) string {
	if role == RoleRequester {
		return Intake
	}
	return Console
}

// ValidRole says whether role is one of Roles.
func ValidRole(role string) bool {
	for _, r := range Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Config is what a Service is built from.
type Config struct {
	DB  *gorm.DB
	Now func() time.Time // nil means time.Now

	// Origins maps each listener to its public origin (https://host[:port]); the RP id is the host.
	Origins map[string]string

	// TrustAnchors verify officers' attestation certificates. Nil refuses every officer registration unless
	// DevAllowSoftwareKeys is set.
	TrustAnchors *TrustAnchors
	// DevAllowSoftwareKeys lets officers register any authenticator (make run, tests). Never with TLS.
	DevAllowSoftwareKeys bool

	IdleConsole   time.Duration // default 15m
	IdleIntake    time.Duration // default 30m
	SessionMax    time.Duration // default 8h
	InvitationTTL time.Duration // default 72h
	CeremonyTTL   time.Duration // default 5m

	// SignInKey seals a sign-in ceremony's state into its id (sealSignIn): every instance serving the same
	// database must have the same (the server derives it from the master key). Empty, New makes a random one,
	// for a process that runs no sign-in or only its own (the CLI, tests).
	SignInKey []byte
}

// Service is the identity store and the two relying parties.
type Service struct {
	db   *gorm.DB
	now  func() time.Time
	cfg  Config
	rps  map[string]*webauthn.WebAuthn
	orig map[string]string
	// lastSweep is when (UnixNano, by now) this process last forgot abandoned ceremonies.
	lastSweep atomic.Int64
	// signIns seals and opens sign-in ceremonies' ids (SignInKey).
	signIns cipher.AEAD
}

// New checks the configuration and builds one relying party per listener.
func New(c Config) (*Service, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.IdleConsole == 0 {
		c.IdleConsole = 15 * time.Minute
	}
	if c.IdleIntake == 0 {
		c.IdleIntake = 30 * time.Minute
	}
	if c.SessionMax == 0 {
		c.SessionMax = 8 * time.Hour
	}
	if c.InvitationTTL == 0 {
		c.InvitationTTL = 72 * time.Hour
	}
	if c.CeremonyTTL == 0 {
		c.CeremonyTTL = 5 * time.Minute
	}
	s := &Service{db: c.DB, now: c.Now, cfg: c, rps: map[string]*webauthn.WebAuthn{}, orig: map[string]string{}}
	key := c.SignInKey
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("identity: sign-in key: %w", err)
	}
	if s.signIns, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("identity: sign-in key: %w", err)
	}
	for _, l := range []string{Intake, Console} {
		origin, ok := c.Origins[l]
		if !ok {
			continue
		}
		u, err := url.Parse(origin)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("identity: %s origin %q is not a URL", l, origin)
		}
		rp, err := webauthn.New(&webauthn.Config{
			RPID:          u.Hostname(),
			RPDisplayName: "gatewayd " + l,
			RPOrigins:     []string{origin},
			AuthenticatorSelection: protocol.AuthenticatorSelection{
				ResidentKey:      protocol.ResidentKeyRequirementRequired,
				UserVerification: protocol.VerificationRequired,
			},
			Timeouts: webauthn.TimeoutsConfig{
				Login:        webauthn.TimeoutConfig{Timeout: c.CeremonyTTL, TimeoutUVD: c.CeremonyTTL},
				Registration: webauthn.TimeoutConfig{Timeout: c.CeremonyTTL, TimeoutUVD: c.CeremonyTTL},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("identity: %s relying party: %w", l, err)
		}
		s.rps[l] = rp
		s.orig[l] = origin
	}
	return s, nil
}

// Origin is the public origin of a listener.
func (s *Service) Origin(listener string) string { return s.orig[listener] }

// DevAllowSoftwareKeys says whether the dev flag is on (pages show a banner).
func (s *Service) DevAllowSoftwareKeys() bool { return s.cfg.DevAllowSoftwareKeys }

// IdleTimeout is the idle limit of sessions on a listener.
func (s *Service) IdleTimeout(listener string) time.Duration {
	if listener == Intake {
		return s.cfg.IdleIntake
	}
	return s.cfg.IdleConsole
}

func (s *Service) rp(listener string) (*webauthn.WebAuthn, error) {
	rp, ok := s.rps[listener]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownListener, listener)
	}
	return rp, nil
}

// newToken returns a 256-bit random token, base64url without padding.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hashToken is what the database keeps of a token: 256 random bits make a plain SHA-256 one-way enough.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
