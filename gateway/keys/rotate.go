package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// RotateResult is what a rotation did.
type RotateResult struct {
	From, To  int   // master key versions
	Rewrapped int64 // data keys re-wrapped by this run
	Resumed   bool  // this run went on with an unfinished rotation
}

// RotateOptions tune a rotation.
type RotateOptions struct {
	Batch int // data keys per transaction; 0 means 200
	// AfterBatch, when set, is called after each committed batch with the total so far; an error stops the run
	// there (the CLI reports progress; tests stop a rotation half way, as a crash would).
	AfterBatch func(rewrapped int64) error
}

// ErrInUse is returned by Retire while data keys are still wrapped under the version.
var ErrInUse = errors.New("master key version still wraps data keys")

// Rotate makes a new master key version and re-wraps every data key under it, in batches, each one
// transaction with its audit row, while the gateway serves: a data key's value never changes, so nothing
// sealed with it is touched, and a server that meets a key wrapped under the new version reads the key file
// again. A run that stops half way (a crash, AfterBatch) is resumed by running Rotate again: as long as some data
// key is wrapped under an older version, Rotate goes on with the newest version instead of making another.
//
// The new version is written to the key file before the database knows it, so that no data key is ever
// wrapped under a key that is not in the file.
func (m *Master) Rotate(ctx context.Context, db *gorm.DB, opts RotateOptions) (RotateResult, error) {
	if opts.Batch <= 0 {
		opts.Batch = 200
	}
	var res RotateResult
	cur, err := currentVersion(db.WithContext(ctx))
	if err != nil {
		return res, err
	}
	var pending int64
	if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM data_keys WHERE master_version <> ?", cur).Scan(&pending).Error; err != nil {
		return res, err
	}
	res.To, res.Resumed = cur, pending > 0
	if !res.Resumed {
		if res.To, err = m.addVersion(ctx, db, cur); err != nil {
			return res, err
		}
		res.From = cur
	}
	for {
		n := 0
		err := store.Tx(ctx, db, func(tx *gorm.DB) error {
			var rows []dataKeyRow
			if err := tx.Where("master_version <> ?", res.To).Order("id").Limit(opts.Batch).Find(&rows).Error; err != nil {
				return err
			}
			for _, r := range rows {
				k, err := m.unwrap(r.MasterVersion, r.ID, r.Wrapped)
				if err != nil {
					return err
				}
				w, err := m.wrap(res.To, r.ID, k)
				if err != nil {
					return err
				}
				// Only if nobody re-wrapped it meanwhile (another rotate run).
				u := tx.Exec("UPDATE data_keys SET master_version = ?, wrapped = ? WHERE id = ? AND master_version = ?",
					res.To, w, r.ID, r.MasterVersion)
				if u.Error != nil {
					return u.Error
				}
				n += int(u.RowsAffected)
			}
			if n == 0 {
				return nil
			}
			return audit.Append(tx, audit.Event{Actor: "cli", Action: "keys.rewrapped", Subject: "keys",
				Details: map[string]any{"master_version": res.To, "data_keys": n}})
		})
		if err != nil {
			return res, fmt.Errorf("re-wrap data keys: %w", err)
		}
		res.Rewrapped += int64(n)
		if n == 0 {
			break
		}
		if opts.AfterBatch != nil {
			if err := opts.AfterBatch(res.Rewrapped); err != nil {
				return res, err
			}
		}
	}
	err = audit.Record(ctx, db, audit.Event{Actor: "cli", Action: "keys.rotated", Subject: "keys",
		Details: map[string]any{"master_version": res.To, "rewrapped": res.Rewrapped}})
	return res, err
}

// Prepare writes the next master key version into the key file and uses it nowhere yet, so that it can be
// copied to every instance before Rotate wraps anything under it. Rotate takes a prepared version.
func (m *Master) Prepare(ctx context.Context, db *gorm.DB) (int, error) {
	cur, err := currentVersion(db.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	return m.prepareFile(cur)
}

// prepareFile makes sure the key file holds a version after cur, writing a new random one if not, and returns
// it. A version left in the file by Prepare, or by a run that stopped before registering it, is reused.
func (m *Master) prepareFile(cur int) (int, error) {
	if m.path == "" {
		return 0, errors.New("rotate: the master key was not loaded from a file")
	}
	versions, err := readFile(m.path)
	if err != nil {
		return 0, err
	}
	next := cur + 1
	for v := range versions {
		if v >= next {
			next = v
		}
	}
	if _, ok := versions[next]; !ok {
		k := make([]byte, Size)
		rand.Read(k)
		versions[next] = k
		if err := writeFile(m.path, versions); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	m.versions[next] = versions[next]
	m.mu.Unlock()
	return next, nil
}

// addVersion makes sure the key file holds the next version (prepareFile), then registers it in the database,
// which makes it the version new data keys are wrapped under.
func (m *Master) addVersion(ctx context.Context, db *gorm.DB, cur int) (int, error) {
	next, err := m.prepareFile(cur)
	if err != nil {
		return 0, err
	}
	check, _ := m.CheckValueOf(next)
	err = store.Tx(ctx, db, func(tx *gorm.DB) error {
		if err := tx.Exec("INSERT INTO master_keys (version, check_value, created_at) VALUES (?, ?, ?)", next, check, time.Now().UTC()).Error; err != nil {
			return fmt.Errorf("register master key version %d: %w", next, err)
		}
		return audit.Append(tx, audit.Event{Actor: "cli", Action: "keys.version_added", Subject: "keys",
			Details: map[string]any{"master_version": next, "previous": cur}})
	})
	return next, err
}

// Retire marks a master key version retired and removes it from the key file, once no data key is wrapped
// under it and it is not the newest. After that, a copy of the old key file opens nothing in the database.
func (m *Master) Retire(ctx context.Context, db *gorm.DB, version int) error {
	cur, err := currentVersion(db.WithContext(ctx))
	if err != nil {
		return err
	}
	if version == cur {
		return fmt.Errorf("retire: version %d is the current master key (rotate first)", version)
	}
	err = store.Tx(ctx, db, func(tx *gorm.DB) error {
		var used int64
		if err := tx.Raw("SELECT COUNT(*) FROM data_keys WHERE master_version = ?", version).Scan(&used).Error; err != nil {
			return err
		}
		if used > 0 {
			return fmt.Errorf("retire version %d: %d data keys: %w (finish the rotation: gatewayd keys rotate)", version, used, ErrInUse)
		}
		res := tx.Exec("UPDATE master_keys SET retired_at = ? WHERE version = ? AND retired_at IS NULL", time.Now().UTC(), version)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return nil // retired before; the file may still need the cleaning below
		}
		return audit.Append(tx, audit.Event{Actor: "cli", Action: "keys.retired", Subject: "keys",
			Details: map[string]any{"master_version": version}})
	})
	if err != nil {
		return err
	}
	versions, err := readFile(m.path)
	if err != nil {
		return err
	}
	if _, ok := versions[version]; ok {
		delete(versions, version)
		if err := writeFile(m.path, versions); err != nil {
			return err
		}
	}
	m.mu.Lock()
	delete(m.versions, version)
	m.mu.Unlock()
	return nil
}
