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
