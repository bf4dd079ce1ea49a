package audit

import (
	"testing"
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

// ChainerIdle returns once db's chainer (if any) has done the runs asked of it and ended, without asking for
// one: what the chainer did on its own is then in the database.
func ChainerIdle(db *gorm.DB) {
	if c, err := chainerOf(db); err == nil {
		c.stop()
	}
}

// SetLinkDelay sets how long a commit's wake waits, until t ends. Set it before the test opens its database:
// commits read it.
func SetLinkDelay(t testing.TB, d time.Duration) {
	old := linkDelay
	linkDelay = d
	t.Cleanup(func() { linkDelay = old })
}

// ChainerRuns returns how many link runs db's chainer has begun.
func ChainerRuns(db *gorm.DB) uint64 {
	c, err := chainerOf(db)
	if err != nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}
