package records

import (
	"errors"
	"fmt"
	"sync"

	"gorm.io/gorm"

	"gatewayd/gateway/keys"
)

// Envelope encryption: a patient's rows (demographics, entries) are sealed with the patient's own data key,
// kept in data_keys wrapped by the master key, so rotating the master key re-wraps one small row per patient
// and re-encrypts no record. Patients stored before envelope encryption have no data key of their own: they
// stay sealed with the records key derived from the root, itself a wrapped data key.

// sealerCacheMax bounds the unwrapped data keys held in memory; past it the cache starts again (a data key is
// one indexed read and an unwrap away).
const sealerCacheMax = 10000

type sealerCache struct {
	mu sync.Mutex
	m  map[string]sealer
}

func (c *sealerCache) get(pid string) (sealer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[pid]
	return s, ok
}

func (c *sealerCache) put(pid string, s sealer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= sealerCacheMax {
		c.m = map[string]sealer{}
	}
	c.m[pid] = s
}

func patientKeyID(pid string) string { return "patient:" + pid }

// sealerOf returns the sealer of a patient's rows, reading the data key through db (the caller's transaction
// when the patient is being stored).
func (s *Service) sealerOf(db *gorm.DB, pid string) (sealer, error) {
	if sl, ok := s.sealers.get(pid); ok {
		return sl, nil
	}
	k, err := s.keys.DataKey(db.Statement.Context, db, patientKeyID(pid))
	var sl sealer
	switch {
	case errors.Is(err, keys.ErrNoDataKey):
		sl = s.legacy
	case err != nil:
		return sealer{}, fmt.Errorf("patient %s: %w", pid, err)
	default:
		if sl, err = newSealer(k); err != nil {
			return sealer{}, err
		}
	}
	s.sealers.put(pid, sl)
	return sl, nil
}

// newPatientSealer, inside the transaction that stores a new patient, makes the patient's data key.
func (s *Service) newPatientSealer(tx *gorm.DB, pid string) (sealer, error) {
	k, err := s.keys.NewDataKey(tx, patientKeyID(pid))
	if err != nil {
		return sealer{}, fmt.Errorf("patient data key: %w", err)
	}
	sl, err := newSealer(k)
	if err != nil {
		return sealer{}, err
	}
	s.sealers.put(pid, sl)
	return sl, nil
}
