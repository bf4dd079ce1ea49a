package records

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"

	"gorm.io/gorm"

	"gatewayd/gateway/strictjson"
)

// importNDJSON reads a Bulk Data file line by line and stores it in batches of ndjsonBatch lines, one
// transaction each: a bad line rejects its batch, the batches before it stay. Resources reference their
// patient as Patient/<id>, a Patient imported earlier (in this run or a previous one).
func (r *importRun) importNDJSON(ctx context.Context, in io.Reader) error {
	br := bufio.NewReaderSize(in, 64<<10)
	var batch []ndjsonLine
	line := 0
	for {
		raw, err := readLine(br, r.opts.MaxResourceSize)
		if len(raw) > 0 || errors.Is(err, errResourceTooLarge) {
			line++
		}
		if errors.Is(err, errResourceTooLarge) {
			// The batch this line belongs to is refused; the file goes on after the line.
			if err := r.storeErr(ctx, reject(line, "line %d: larger than %d bytes, the limit for one resource (--max-resource-size): refused unread",
				line, r.opts.MaxResourceSize)); err != nil {
				return err
			}
			batch = batch[:0]
			continue
		}
		if len(raw) > 0 {
			if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 {
				batch = append(batch, ndjsonLine{number: line, raw: trimmed})
			}
		}
		if errors.Is(err, errTooLarge) {
			return r.storeErr(ctx, errTooLarge)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return r.storeErr(ctx, err)
		}
		last := errors.Is(err, io.EOF)
		if len(batch) >= ndjsonBatch || (last && len(batch) > 0) {
			if err := r.storeErr(ctx, r.storeNDJSONBatch(ctx, batch)); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if last {
			return nil
		}
	}
}

type ndjsonLine struct {
	number int
	raw    []byte
}

func (r *importRun) storeNDJSONBatch(ctx context.Context, lines []ndjsonLine) error {
	local := newReport()
	var patients []*patientResource
	var entries []*pendingEntry
	for _, l := range lines {
		var h resourceHead
		if err := strictjson.Check(l.raw, resourceNames...); err != nil {
			return reject(l.number, "line %d: %s", l.number, jsonProblem(err))
		}
		if err := decodeHead(l.raw, &h); err != nil {
			return reject(l.number, "line %d: %s", l.number, jsonProblem(err))
		}
		if h.ResourceType == "" {
			return reject(l.number, "line %d: JSON but not a FHIR resource (no resourceType)", l.number)
		}
		if h.ResourceType == "Patient" {
			var p patientResource
			if err := json.Unmarshal(l.raw, &p); err != nil {
				return reject(l.number, "line %d (Patient): %s", l.number, jsonProblem(err))
			}
			if p.ID == "" {
				return reject(l.number, "line %d (Patient): no id", l.number)
			}
			if _, err := p.demographics(); err != nil {
				return reject(l.number, "line %d (Patient): %v", l.number, err)
			}
			patients = append(patients, &p)
			continue
		}
		if _, kept := CategoryOf(h.ResourceType); !kept {
			local.Skipped[shortName(h.ResourceType)]++
			continue
		}
		pe, err := readEntry(l.number, l.raw, &h)
		if err != nil {
			return reject(l.number, "line %s", strings.TrimPrefix(err.Error(), "entry "))
		}
		if !strings.HasPrefix(pe.patientRef, "Patient/") {
			return reject(l.number, "line %d (%s): the subject is not a Patient/<id> reference", l.number, h.ResourceType)
		}
		entries = append(entries, pe)
	}
	first, last := lines[0].number, lines[len(lines)-1].number
	err := r.s.withTx(ctx, func(tx *gorm.DB) error {
		touched := map[string]bool{}
		for _, p := range patients {
			pid, err := r.s.resolvePatient(tx, p)
			if err != nil {
				return err
			}
			touched[pid] = true
		}
		// Resolve the patients the batch references, through their blind index.
		byIndex := map[string][]*pendingEntry{}
		for _, e := range entries {
			idx := r.s.referenceIndex(strings.TrimPrefix(e.patientRef, "Patient/"))
			byIndex[idx] = append(byIndex[idx], e)
		}
		found, err := lookupKeys(tx, keysOf(byIndex))
		if err != nil {
			return err
		}
		for idx, es := range byIndex {
			pid, ok := found[idx]
			if !ok {
				return reject(es[0].index, "line %d (%s): refers to a patient that was not imported (import the Patient file first)",
					es[0].index, es[0].resourceType)
			}
			touched[pid] = true
			for _, e := range es {
				e.patientRef = pid
			}
		}
		if err := r.s.storeEntries(tx, r.file, entries, local); err != nil {
			return err
		}
		ids := make([]string, 0, len(touched))
		for pid := range touched {
			ids = append(ids, pid)
		}
		sort.Strings(ids)
		return r.auditStored(tx, "import.batch", "import:"+r.rep.RunID, ids, local, first, last)
	})
	if err != nil {
		return err
	}
	r.rep.merge(local)
	r.rep.Stored++
	return nil
}

func keysOf(m map[string][]*pendingEntry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// readLine reads one line (with its newline, if any) of at most max bytes. A longer line is read past to its
// end without being held, and answered with errResourceTooLarge.
func readLine(br *bufio.Reader, max int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if int64(len(line)+len(chunk)) > max {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errResourceTooLarge
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}
