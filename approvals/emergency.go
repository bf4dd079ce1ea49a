package approvals

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
)

// MinimumDataset is what an emergency request may ask for, and all it may ask for: allergies and
// intolerances, current treatments, active problems (conditions) and immunizations — the sections of the
// International Patient Summary. A filing for purpose emergency naming any other category is refused, and
// since an officer may only narrow a scope (and a re-issue releases the same scope), it cannot be widened
// afterwards.
var MinimumDataset = []Category{Allergies, Conditions, Immunizations, Treatments}

// CodeEmergencyMinimum is the FieldError code of a category outside the minimum dataset on an emergency filing.
const CodeEmergencyMinimum = "emergency_minimum"

// Defaults of the emergency settings (Policy.EmergencyExtractTTL, Policy.EmergencyReviewWithin).
const (
	DefaultEmergencyExtractTTL   = 2 * time.Hour
	DefaultEmergencyReviewWithin = 72 * time.Hour
)

// InMinimumDataset says whether every category of cs belongs to the emergency minimum dataset.
func InMinimumDataset(cs []Category) bool {
	for _, c := range cs {
		if !slices.Contains(MinimumDataset, c) {
			return false
		}
	}
	return true
}

// emergencyGranted says whether a request gets the emergency privileges now (head of the queue, one
// signature, the short expiry, the IPS-shaped extract): purpose emergency, and a patient who has not opposed
// emergency access. A patient who opposes is treated like any other (issue 10, point 3).
func (s *Service) emergencyGranted(ctx context.Context, db *gorm.DB, purpose Purpose, patient Identifier) (bool, error) {
	if purpose != PurposeEmergency {
		return false, nil
	}
	opposed, err := s.emergencyOpposed(ctx, db, patient)
	return !opposed, err
}

// extractTTL is the lifetime of an extract an officer approves: asked (0 takes the default), bounded by the
// policy; an emergency release defaults to, and may not exceed, the emergency lifetime.
func (s *Service) extractTTL(asked time.Duration, emergency bool) (time.Duration, error) {
	def, max := s.policy.DefaultExtractTTL, s.policy.MaxExtractTTL
	if emergency {
		def, max = s.policy.EmergencyExtractTTL, min(s.policy.EmergencyExtractTTL, s.policy.MaxExtractTTL)
	}
	ttl := asked
	if ttl == 0 {
		ttl = min(def, max)
	}
	if ttl < time.Minute || ttl > max {
		return 0, fmt.Errorf("%w: %s (at most %s)", ErrExpiryOutOfRange, ttl, max)
	}
	return ttl, nil
}
