package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// RootID is the data key from which Derive derives the sub-keys.
const RootID = "system:root"

// ErrWrongKey means the key file does not hold the master key versions the database was wrapped with.
var ErrWrongKey = errors.New("key file does not belong to this database")

// ErrNoDataKey is returned by DataKey when no data key has the id.
var ErrNoDataKey = errors.New("no data key")

// wrapAAD binds a wrapped data key to its id and master version: a wrapped key copied to another row, or
// relabelled with another version, does not open.
func wrapAAD(id string, version int) []byte {
	return []byte("data_keys|" + id + "|v" + strconv.Itoa(version))
}

func (m *Master) wrapper(version int) (cipher.AEAD, error) {
	k, ok := m.version(version)
	if !ok {
		return nil, fmt.Errorf("master key version %d is not in the key file: %w", version, ErrWrongKey)
	}
	block, err := aes.NewCipher(derive(k, purposeWrap))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// wrap encrypts a data key under a master key version. Stored form: nonce || ciphertext+tag.
func (m *Master) wrap(version int, id string, dataKey []byte) ([]byte, error) {
	aead, err := m.wrapper(version)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(dataKey)+aead.Overhead())
	rand.Read(out)
	return aead.Seal(out, out, dataKey, wrapAAD(id, version)), nil
}

func (m *Master) unwrap(version int, id string, wrapped []byte) ([]byte, error) {
	aead, err := m.wrapper(version)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(wrapped) < ns+aead.Overhead() {
		return nil, fmt.Errorf("data key %s: %w", id, ErrWrongKey)
	}
	k, err := aead.Open(nil, wrapped[:ns], wrapped[ns:], wrapAAD(id, version))
	if err != nil {
		return nil, fmt.Errorf("data key %s does not open under master key version %d: %w", id, version, ErrWrongKey)
	}
	return k, nil
}

type dataKeyRow struct {
	ID            string
	MasterVersion int
	Wrapped       []byte
	CreatedAt     time.Time
}

func (dataKeyRow) TableName() string { return "data_keys" }

// Bind ties the key file to the database and takes the root from it. The first time (no master key version
// registered: a database from before envelope encryption, or a new one) it is the data step of migration
// 0010: version 1 of the key file is registered and its key, the root every sub-key was derived from, is
// wrapped under it, in one transaction with its audit row. Afterwards every version the file holds must have
// the check value the database registered, and the root is unwrapped from the database.
func (m *Master) Bind(ctx context.Context, db *gorm.DB) error {
	var root []byte
	err := store.Tx(ctx, db, func(tx *gorm.DB) error {
		if store.DialectOf(tx) == store.Postgres {
			// Two instances starting on a fresh database register version 1 once.
			if err := tx.Exec("SELECT pg_advisory_xact_lock(727005)").Error; err != nil {
				return err
			}
		}
		var registered []struct {
			Version    int
			CheckValue string
		}
		if err := tx.Raw("SELECT version, check_value FROM master_keys").Scan(&registered).Error; err != nil {
			return fmt.Errorf("read master key versions: %w", err)
		}
		if len(registered) == 0 {
			v1, ok := m.version(1)
			if !ok {
				return fmt.Errorf("the database has no master key version yet and the key file lacks version 1: %w", ErrWrongKey)
			}
			check, _ := m.CheckValueOf(1)
			// A database that already holds sealed data keeps version 1's key as the root: everything was
			// derived from it. A database that holds none gets a random root, so that once version 1 is retired
			// a copy of the old key file derives nothing.
			root = v1
			var held int64
			if err := tx.Raw("SELECT (SELECT COUNT(*) FROM record_patients) + (SELECT COUNT(*) FROM approval_requests)").Scan(&held).Error; err != nil {
				return err
			}
			if held == 0 {
				root = make([]byte, Size)
				rand.Read(root)
			}
			wrapped, err := m.wrap(1, RootID, root)
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			if err := tx.Exec("INSERT INTO master_keys (version, check_value, created_at) VALUES (1, ?, ?)", check, now).Error; err != nil {
				return err
			}
			if err := tx.Create(&dataKeyRow{ID: RootID, MasterVersion: 1, Wrapped: wrapped, CreatedAt: now}).Error; err != nil {
				return err
			}
			return audit.Append(tx, audit.Event{Actor: "system", Action: "keys.enveloped", Subject: "keys",
				Details: map[string]any{"master_version": 1, "root_from_version_1": held > 0}})
		}
		for _, r := range registered {
			if got, ok := m.CheckValueOf(r.Version); ok && got != r.CheckValue {
				return fmt.Errorf("master key version %d: %w", r.Version, ErrWrongKey)
			}
		}
		var err error
		root, err = m.dataKey(tx, RootID)
		return err
	})
	if err != nil {
		return fmt.Errorf("bind key file: %w", err)
	}
	m.mu.Lock()
	m.root = root
	m.mu.Unlock()
	return nil
}

// NewDataKey, inside tx, makes a random data key for id, wraps it under the newest master key version and
// stores it.
func (m *Master) NewDataKey(tx *gorm.DB, id string) ([]byte, error) {
	v, err := currentVersion(tx)
	if err != nil {
		return nil, err
	}
	k := make([]byte, Size)
	rand.Read(k)
	wrapped, err := m.wrap(v, id, k)
	if err != nil {
		return nil, err
	}
	if err := tx.Create(&dataKeyRow{ID: id, MasterVersion: v, Wrapped: wrapped, CreatedAt: time.Now().UTC()}).Error; err != nil {
		return nil, fmt.Errorf("store data key: %w", err)
	}
	return k, nil
}

// DataKey reads and unwraps the data key id (ErrNoDataKey when there is none).
func (m *Master) DataKey(ctx context.Context, db *gorm.DB, id string) ([]byte, error) {
	return m.dataKey(db.WithContext(ctx), id)
}

func (m *Master) dataKey(db *gorm.DB, id string) ([]byte, error) {
	var rows []dataKeyRow
	if err := db.Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: %w", id, ErrNoDataKey)
	}
	return m.unwrap(rows[0].MasterVersion, id, rows[0].Wrapped)
}

// currentVersion is the newest master key version not retired: new data keys are wrapped under it.
func currentVersion(tx *gorm.DB) (int, error) {
	var v []int
	if err := tx.Raw("SELECT version FROM master_keys WHERE retired_at IS NULL ORDER BY version DESC LIMIT 1").Scan(&v).Error; err != nil {
		return 0, fmt.Errorf("read master key version: %w", err)
	}
	if len(v) == 0 {
		return 0, errors.New("no master key version registered (start the server once, or run migrate and keys commands after Bind)")
	}
	return v[0], nil
}
