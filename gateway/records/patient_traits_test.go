package records_test

import (
	"context"
	"errors"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// A patient's identity traits come from the sealed demographics (official name, first given name, birth date,
// gender); an identifier that names nobody is ErrNoPatient.
func TestPatientTraits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles"))
		got, err := s.PatientTraits(ctx, busterSSN)
		if err != nil {
			t.Fatal(err)
		}
		if want := (records.Traits{Family: "Hoeger", Given: "Buster", BirthDate: "1988-03-16", Gender: "male"}); got != want {
			t.Fatalf("traits %+v, want %+v", got, want)
		}
		if _, err := s.PatientTraits(ctx, records.Identifier{System: busterSSN.System, Value: "000-00-0000"}); !errors.Is(err, records.ErrNoPatient) {
			t.Fatalf("unknown identifier: %v", err)
		}
	})
}
