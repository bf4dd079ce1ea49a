package approvals

import (
	"context"

	"gorm.io/gorm"
)

// EmergencyOpposed exposes emergencyOpposed (emergency access's question, asked inside its transactions) to
// the external tests.
func (s *Service) EmergencyOpposed(ctx context.Context, db *gorm.DB, patient Identifier) (bool, error) {
	return s.emergencyOpposed(ctx, db, patient)
}

// AfterClaimRead runs fn between each claim's read and its write, until t ends.
func AfterClaimRead(t interface{ Cleanup(func()) }, fn func()) {
	afterClaimRead = fn
	t.Cleanup(func() { afterClaimRead = nil })
}
