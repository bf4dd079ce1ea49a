package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Traits are the INS identity traits a requester may give with the identifier (French identity vigilance: an
// INS is used only with the traits it was issued with). Every trait is optional; they are sealed at rest like
// the identifier, never logged, never returned to the requester, and compared only on the console.
type Traits struct {
	// BirthName is the birth family name (nom de naissance).
	BirthName string `json:"birth_name"`
	// GivenName is the first given name (premier prénom).
	GivenName string `json:"given_name"`
	// BirthDate is YYYY-MM-DD.
	BirthDate string `json:"birth_date"`
	// Sex is one of Sexes (FHIR administrative gender codes).
	Sex string `json:"sex"`
}

// Trait names, in the order pages list them: also the FieldError fields of a filing.
const (
	TraitBirthName = "birth_name"
	TraitGivenName = "given_name"
	TraitBirthDate = "birth_date"
	TraitSex       = "sex"
)

// TraitNames lists the traits in display order.
var TraitNames = []string{TraitBirthName, TraitGivenName, TraitBirthDate, TraitSex}

// Sexes are the values a requester may give for the sex trait (FHIR's administrative gender, "other" for
// the INS's "indéterminé").
var Sexes = []string{"female", "male", "other"}

// MaxTraitLen bounds a name trait.
const MaxTraitLen = 100

// IsZero says whether no trait was given.
func (t Traits) IsZero() bool { return t == Traits{} }

func (t Traits) value(name string) string {
	switch name {
	case TraitBirthName:
		return t.BirthName
	case TraitGivenName:
		return t.GivenName
	case TraitBirthDate:
		return t.BirthDate
	default:
		return t.Sex
	}
}

func (t Traits) normalize() Traits {
	return Traits{BirthName: strings.TrimSpace(t.BirthName), GivenName: strings.TrimSpace(t.GivenName),
		BirthDate: strings.TrimSpace(t.BirthDate), Sex: strings.TrimSpace(t.Sex)}
}

// validate adds the field errors of normalized traits; today is YYYY-MM-DD.
func (t Traits) validate(today string, add func(field, code string)) {
	for _, f := range []struct{ name, v string }{{TraitBirthName, t.BirthName}, {TraitGivenName, t.GivenName}} {
		switch {
		case utf8.RuneCountInString(f.v) > MaxTraitLen:
			add(f.name, CodeTooLong)
		case !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl):
			add(f.name, CodeInvalid)
		case f.v != "" && foldName(f.v) == "":
			// Punctuation only: nothing an officer could compare.
			add(f.name, CodeInvalid)
		}
	}
	switch d := t.BirthDate; {
	case d == "":
	case !validDate(d):
		add(TraitBirthDate, CodeInvalid)
	case d > today:
		add(TraitBirthDate, CodeFuture)
	}
	if t.Sex != "" && !knownSex(t.Sex) {
		add(TraitSex, CodeUnknown)
	}
}

func knownSex(s string) bool {
	for _, x := range Sexes {
		if s == x {
			return true
		}
	}
	return false
}

// foldName is the form names are compared in, as identity-vigilance tools do: diacritics removed, upper
// case, every run of characters other than letters and digits (space, hyphen, apostrophe) one space.
// "Müller-D'Arc" and "MULLER D ARC" are the same name.
func foldName(s string) string {
	var b strings.Builder
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(unicode.ToUpper(r))
		default:
			space = true
		}
	}
	return b.String()
}

// TraitResult is how one trait compares with the records' Patient.
type TraitResult string

const (
	TraitMatch   TraitResult = "match"
	TraitDiffers TraitResult = "differs"
	// TraitMissing: the requester did not give it, or the records do not hold it (nothing to compare).
	TraitMissing TraitResult = "missing"
)

// TraitCheck is one trait's result. It carries no value: the review page says whether the traits agree,
// never what the records hold.
type TraitCheck struct {
	Trait  string      `json:"trait"`
	Result TraitResult `json:"result"`
}

// IdentityCheck is the trait-by-trait comparison of a request's traits with the records' Patient.
type IdentityCheck []TraitCheck

// Differs lists the traits that differ (sorted as TraitNames).
func (c IdentityCheck) Differs() []string {
	var out []string
	for _, t := range c {
		if t.Result == TraitDiffers {
			out = append(out, t.Trait)
		}
	}
	return out
}

// compareTraits compares what the requester gave with what the records hold.
func compareTraits(asked, held Traits) IdentityCheck {
	out := make(IdentityCheck, 0, len(TraitNames))
	for _, name := range TraitNames {
		a, h := asked.value(name), held.value(name)
		r := TraitMissing
		switch name {
		case TraitBirthName, TraitGivenName:
			a, h = foldName(a), foldName(h)
		case TraitBirthDate:
			// The records may hold a partial FHIR date (YYYY or YYYY-MM): a full date inside it cannot be
			// checked further, one outside it differs.
			if a != "" && h != "" && len(h) < len(a) {
				if strings.HasPrefix(a, h+"-") {
					h = ""
				} else {
					h = "?"
				}
			}
		case TraitSex:
			if h == "unknown" {
				h = ""
			}
		}
		switch {
		case a == "" || h == "":
		case a == h:
			r = TraitMatch
		default:
			r = TraitDiffers
		}
		out = append(out, TraitCheck{Trait: name, Result: r})
	}
	return out
}

// checkIdentity compares a request's traits with the records' Patient (console side only). A patient the
// records do not know returns ErrNoPatient.
func (s *Service) checkIdentity(ctx context.Context, req Request) (IdentityCheck, error) {
	if req.Traits.IsZero() {
		// Nothing to compare: no need to open the records' Patient.
		return compareTraits(Traits{}, Traits{}), nil
	}
	held, err := s.records.Traits(ctx, req.Scope.Patient)
	if err != nil {
		return nil, fmt.Errorf("identity traits: %w", err)
	}
	return compareTraits(req.Traits, held), nil
}

// IdentityOverride is signed in a decision that approves although traits differ: which traits differed
// when the officer prepared it, and the officer's reason.
type IdentityOverride struct {
	Differs []string `json:"differs"`
	Reason  string   `json:"reason"`
}

// ErrTraitsDiffer refuses an approval while an identity trait differs and no override reason was given.
var ErrTraitsDiffer = errors.New("an identity trait differs from the records: approving needs a signed override with a reason")

// ErrNoOverrideNeeded refuses an override reason when no trait differs: a receipt must not claim an override
// that overrode nothing.
var ErrNoOverrideNeeded = errors.New("no identity trait differs: there is nothing to override")

// identityOverride decides, for an approval, whether the traits allow it: nil when no trait differs, the
// override to sign when some differ and the officer gave a reason, ErrTraitsDiffer otherwise.
func (s *Service) identityOverride(ctx context.Context, req Request, reason string) (*IdentityOverride, error) {
	check, err := s.checkIdentity(ctx, req)
	if err != nil {
		return nil, err
	}
	reason = normalizeText(reason)
	differs := check.Differs()
	switch {
	case len(differs) == 0 && reason != "":
		return nil, ErrNoOverrideNeeded
	case len(differs) == 0:
		return nil, nil
	case reason == "":
		return nil, fmt.Errorf("request %s: %d trait(s): %w", req.ID, len(differs), ErrTraitsDiffer)
	case !cleanText(reason):
		return nil, ErrControlChars
	case utf8.RuneCountInString(reason) > MaxReasonLen:
		return nil, fmt.Errorf("%w: override reason longer than %d characters", ErrBadInput, MaxReasonLen)
	}
	return &IdentityOverride{Differs: differs, Reason: reason}, nil
}

// traitCount is how many traits a filing carries: what the audit keeps of them (counts, never values).
func traitCount(t Traits) int {
	n := 0
	for _, name := range TraitNames {
		if t.value(name) != "" {
			n++
		}
	}
	return n
}
