package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

// ErrWrongKey means the key file is not the one this database was started with: starting anyway would write
// records that nothing can read together.
var ErrWrongKey = errors.New("key file does not belong to this database")

type setting struct {
	Name      string `gorm:"primaryKey"`
	Value     string
	UpdatedAt time.Time
}

func (setting) TableName() string { return "settings" }

// CheckKey compares the key file's check value with the one the database stored at its first start (storing
// it on that first start), both outcomes audited, then binds the key file to the database (keys.Bind: every
// master key version checked, the root of the sub-keys unwrapped). A key file whose version 1 was retired
// after a rotation has no first check value to compare: Bind checks its versions.
func CheckKey(ctx context.Context, db *gorm.DB, master *keys.Master, keyFile string) error {
	if _, hasV1 := master.CheckValueOf(1); !hasV1 {
		return bindKey(ctx, db, master, keyFile)
	}
	want := master.CheckValue()
	var mismatch bool
	err := store.Tx(ctx, db, func(tx *gorm.DB) error {
		first := tx.Clauses(clause.OnConflict{DoNothing: true}).
			Create(&setting{Name: "key_check", Value: want, UpdatedAt: time.Now().UTC()})
		if first.Error != nil {
			return first.Error
		}
		var got setting
		if err := tx.Where("name = ?", "key_check").Take(&got).Error; err != nil {
			return err
		}
		result := "match"
		switch {
		case first.RowsAffected == 1:
			result = "first start: key check value stored"
		case got.Value != want:
			result = "mismatch"
			mismatch = true
		}
		return audit.Append(tx, audit.Event{Actor: "system", Action: "key.check", Subject: "key_file", Details: map[string]any{"result": result}})
	})
	if err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	if mismatch {
		return fmt.Errorf("%s: %w (was it made for another data directory?)", keyFile, ErrWrongKey)
	}
	return bindKey(ctx, db, master, keyFile)
}

func bindKey(ctx context.Context, db *gorm.DB, master *keys.Master, keyFile string) error {
	err := master.Bind(ctx, db)
	if errors.Is(err, keys.ErrWrongKey) {
		return fmt.Errorf("%s: %w (%v)", keyFile, ErrWrongKey, err)
	}
	return err
}
