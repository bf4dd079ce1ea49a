package audit

import (
	"time"

	"gorm.io/gorm"
)

// AppendUnlinked inserts ev as a committed-but-not-yet-linked row would be, inserted at addedAt, on either
// database: the state a process leaves when it stops between its commit and the link.
func AppendUnlinked(tx *gorm.DB, ev Event, addedAt time.Time) error {
	r := Row{At: ev.At.UTC().Truncate(time.Microsecond), Actor: ev.Actor, Action: ev.Action, Subject: ev.Subject,
		AddedAt: addedAt.UTC().Truncate(time.Microsecond)}
	var err error
	if r.Details, err = marshalDetails(ev.Details); err != nil {
		return err
	}
	if r.ContentHash, err = ContentHash(r); err != nil {
		return err
	}
	return insertUnlinked(tx, r)
}
