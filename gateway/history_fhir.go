package gateway

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
)

// The access history as FHIR R4: a Bundle (type collection) of AuditEvent resources, one per audited event
// about the patient's requests and extracts, then one for this printing itself, which carries whether the
// audit chain verified. Codes: DICOM "Patient Record" as type, the gateway's own action as subtype, the
// purpose as a v3 ActReason (ETREAT for an emergency) beside the gateway's purpose code.
const (
	fhirDCM            = "http://dicom.nema.org/resources/ontology/DCM"
	fhirActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	fhirSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	fhirEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	fhirObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	gatewayAction      = "urn:gatewayd:audit-action"
	gatewayPurpose     = "urn:gatewayd:purpose"
	gatewayUser        = "urn:gatewayd:user"
	gatewayRequest     = "urn:gatewayd:request"
	gatewayExtract     = "urn:gatewayd:extract"
	gatewayRestriction = "urn:gatewayd:restriction"
	gatewayPrinting    = "urn:gatewayd:access-history"
)

type fhirCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type fhirAgent struct {
	Who       fhirReference `json:"who"`
	AltID     string        `json:"altId,omitempty"`
	Requestor bool          `json:"requestor"`
}

type fhirDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type fhirEntity struct {
	What   fhirReference `json:"what"`
	Type   *fhirCoding   `json:"type,omitempty"`
	Role   *fhirCoding   `json:"role,omitempty"`
	Detail []fhirDetail  `json:"detail,omitempty"`
}

type fhirCodeable struct {
	Coding []fhirCoding `json:"coding"`
}

type fhirAuditEvent struct {
	ResourceType   string         `json:"resourceType"`
	ID             string         `json:"id"`
	Type           fhirCoding     `json:"type"`
	Subtype        []fhirCoding   `json:"subtype"`
	Action         string         `json:"action"`
	Recorded       string         `json:"recorded"`
	Outcome        string         `json:"outcome"`
	PurposeOfEvent []fhirCodeable `json:"purposeOfEvent,omitempty"`
	Agent          []fhirAgent    `json:"agent"`
	Source         struct {
		Observer fhirReference `json:"observer"`
		Type     []fhirCoding  `json:"type"`
	} `json:"source"`
	Entity []fhirEntity `json:"entity"`
}

type fhirEntry struct {
	FullURL  string         `json:"fullUrl"`
	Resource fhirAuditEvent `json:"resource"`
}

type fhirBundle struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id"`
	Identifier   fhirIdentifier `json:"identifier"`
	Type         string         `json:"type"`
	Timestamp    string         `json:"timestamp"`
	Total        *int           `json:"total,omitempty"`
	Entry        []fhirEntry    `json:"entry"`
}

// actReason maps a purpose onto HL7 v3 ActReason, the vocabulary of AuditEvent.purposeOfEvent.
var actReason = map[approvals.Purpose]string{
	approvals.PurposeCareContinuity: "TREAT",
	approvals.PurposeEmergency:      "ETREAT",
	approvals.PurposeSecondOpinion:  "TREAT",
	approvals.PurposeLegalRequest:   "HLEGAL",
	approvals.PurposeOther:          "HOPERAT",
}

// historyBundle writes the access history as a FHIR R4 Bundle of AuditEvents.
func historyBundle(hist approvals.AccessHistory) ([]byte, error) {
	v := historyView{hist}
	b := fhirBundle{ResourceType: "Bundle", ID: hist.PrintID, Type: "collection",
		Identifier: fhirIdentifier{System: gatewayPrinting, Value: hist.PrintID}, Timestamp: fhirInstant(hist.PrintedAt)}
	patient := fhirEntity{What: fhirReference{Identifier: &fhirIdentifier{System: hist.Patient.System, Value: hist.Patient.Value}},
		Type: &fhirCoding{System: fhirEntityType, Code: "1", Display: "Person"}, Role: &fhirCoding{System: fhirObjectRole, Code: "1", Display: "Patient"}}
	add := func(ev fhirAuditEvent) {
		ev.ResourceType, ev.Type, ev.Outcome = "AuditEvent", fhirCoding{System: fhirDCM, Code: "110110", Display: "Patient Record"}, "0"
		ev.Source.Observer = fhirReference{Display: "gatewayd"}
		ev.Source.Type = []fhirCoding{{System: fhirSourceType, Code: "4", Display: "Application Server"}}
		b.Entry = append(b.Entry, fhirEntry{FullURL: "urn:uuid:" + uuid.NewString(), Resource: ev})
	}
	for _, r := range hist.Requests {
		request := fhirEntity{What: fhirReference{Identifier: &fhirIdentifier{System: gatewayRequest, Value: r.RequestID}},
			Type: &fhirCoding{System: fhirEntityType, Code: "2", Display: "System Object"}, Detail: requestDetails(v, r)}
		purpose := []fhirCodeable{{Coding: []fhirCoding{{System: fhirActReason, Code: actReason[r.Purpose]},
			{System: gatewayPurpose, Code: string(r.Purpose)}}}}
		extracts := map[string]approvals.ExtractRecord{}
		for _, x := range r.Extracts {
			extracts["extract:"+x.ID] = x
		}
		for _, ev := range r.Trail {
			entities := []fhirEntity{patient, request}
			if x, ok := extracts[ev.Subject]; ok {
				entities = append(entities, extractEntity(v, x))
			}
			add(fhirAuditEvent{ID: auditEventID(ev), Subtype: []fhirCoding{{System: gatewayAction, Code: ev.Action}},
				Action: fhirAction(ev.Action), Recorded: fhirInstant(ev.At), PurposeOfEvent: purpose,
				Agent: []fhirAgent{agentOf(v, ev.Actor)}, Entity: entities})
		}
	}
	for _, r := range hist.Restrictions {
		d := []fhirDetail{{Type: "restriction", ValueString: string(r.Kind)}, {Type: "in-force", ValueString: strconv.FormatBool(r.LiftedAt == nil)},
			{Type: "target", ValueString: r.Target}, {Type: "reference", ValueString: r.Reference},
			{Type: "recorded", ValueString: fhirInstant(r.RecordedAt) + " by " + v.Name(r.RecordedBy.ID)}}
		if r.LiftedAt != nil {
			d = append(d, fhirDetail{Type: "lifted", ValueString: fhirInstant(*r.LiftedAt) + " by " + v.Name(r.LiftedBy.ID)})
		}
		restriction := fhirEntity{What: fhirReference{Identifier: &fhirIdentifier{System: gatewayRestriction, Value: r.ID}},
			Type:   &fhirCoding{System: fhirEntityType, Code: "2", Display: "System Object"},
			Detail: slices.DeleteFunc(d, func(x fhirDetail) bool { return x.ValueString == "" })}
		for _, ev := range r.Trail {
			add(fhirAuditEvent{ID: auditEventID(ev), Subtype: []fhirCoding{{System: gatewayAction, Code: ev.Action}},
				Action: fhirAction(ev.Action), Recorded: fhirInstant(ev.At), Agent: []fhirAgent{agentOf(v, ev.Actor)},
				Entity: []fhirEntity{patient, restriction}})
		}
	}
	for _, ev := range hist.PatientEvents {
		add(fhirAuditEvent{ID: auditEventID(ev), Subtype: []fhirCoding{{System: gatewayAction, Code: ev.Action}},
			Action: fhirAction(ev.Action), Recorded: fhirInstant(ev.At), Agent: []fhirAgent{agentOf(v, ev.Actor)},
			Entity: []fhirEntity{patient}})
	}
	// This printing: the row the domain appended names it by its print id; the chain's state is said here.
	chain := []fhirDetail{{Type: "audit-chain-verified", ValueString: strconv.FormatBool(hist.Chain.Verified)}}
	if hist.Chain.Verified {
		chain = append(chain, fhirDetail{Type: "audit-chain-rows", ValueString: strconv.FormatInt(hist.Chain.Rows, 10)},
			fhirDetail{Type: "audit-chain-verified-through", ValueString: strconv.FormatInt(hist.Chain.Through, 10)},
			fhirDetail{Type: "audit-chain-head", ValueString: hist.Chain.Head},
			fhirDetail{Type: "audit-chain-walked-through", ValueString: strconv.FormatInt(hist.Chain.WalkedTo, 10)},
			fhirDetail{Type: "audit-chain-walked-at", ValueString: fhirInstant(hist.Chain.WalkedAt)},
			fhirDetail{Type: "audit-chain-rows-rechecked", ValueString: strconv.Itoa(hist.Chain.Rechecked)})
	} else {
		chain = append(chain, fhirDetail{Type: "audit-chain-broken-at", ValueString: strconv.FormatInt(hist.Chain.BrokenAt, 10)},
			fhirDetail{Type: "audit-chain-reason", ValueString: hist.Chain.Reason})
	}
	printing := patient
	printing.Detail = append([]fhirDetail{{Type: "print-id", ValueString: hist.PrintID},
		{Type: "requests", ValueString: strconv.Itoa(len(hist.Requests))}}, chain...)
	add(fhirAuditEvent{ID: "print-" + hist.PrintID, Subtype: []fhirCoding{{System: gatewayAction, Code: "patient.history_printed"}},
		Action: "R", Recorded: fhirInstant(hist.PrintedAt), Agent: []fhirAgent{agentOf(v, "user:"+hist.PrintedBy.ID)},
		Entity: []fhirEntity{printing}})
	total := len(b.Entry)
	b.Total = &total
	return json.Marshal(b)
}

// requestDetails are what the history says of a request, as AuditEvent.entity.detail pairs.
func requestDetails(v historyView, r approvals.AccessRecord) []fhirDetail {
	d := []fhirDetail{{Type: "purpose", ValueString: string(r.Purpose)},
		{Type: "emergency", ValueString: strconv.FormatBool(r.Emergency)},
		{Type: "status", ValueString: string(r.Status)},
		{Type: "filed-at", ValueString: fhirInstant(r.FiledAt)},
		{Type: "requester", ValueString: v.Name(r.Requester.ID) + professional(r.Requester)},
		{Type: "categories-requested", ValueString: joinCats(r.Categories)},
		{Type: "categories-released", ValueString: joinCats(r.Released)}}
	if r.Emergency {
		d = append(d, fhirDetail{Type: "emergency-privileges", ValueString: strconv.FormatBool(r.EmergencyPrivileges)})
	}
	for _, rv := range r.EmergencyReviews {
		state := "awaited until " + fhirInstant(rv.DueAt)
		switch {
		case rv.Verdict != "":
			state = rv.Verdict + " by " + v.Name(rv.Reviewer.ID) + " at " + fhirInstant(*rv.ReviewedAt)
		case rv.Overdue:
			state = "overdue since " + fhirInstant(rv.DueAt)
		}
		d = append(d, fhirDetail{Type: "post-hoc-review", ValueString: state})
	}
	for _, dec := range r.Decisions {
		d = append(d, fhirDetail{Type: "decision", ValueString: dec.Verdict + " by " + v.Name(dec.Officer.ID) +
			professional(dec.Officer) + " at " + fhirInstant(dec.SignedAt)})
	}
	// FHIR strings are never empty: a detail with nothing to say (no category released yet) is left out.
	return slices.DeleteFunc(d, func(x fhirDetail) bool { return x.ValueString == "" })
}

// extractEntity is an extract and its fate.
func extractEntity(v historyView, x approvals.ExtractRecord) fhirEntity {
	d := []fhirDetail{{Type: "entries", ValueString: strconv.Itoa(x.Entries)}, {Type: "expires-at", ValueString: fhirInstant(x.ExpiresAt)}}
	if x.RetrievedAt != nil {
		d = append(d, fhirDetail{Type: "retrieved", ValueString: fhirInstant(*x.RetrievedAt) + " by " + v.Name(x.RetrievedBy.ID)},
			fhirDetail{Type: "delivery", ValueString: strings.TrimPrefix(v.Delivery(x), "history.")})
	}
	if x.RevokedAt != nil {
		d = append(d, fhirDetail{Type: "revoked", ValueString: fhirInstant(*x.RevokedAt)})
	}
	return fhirEntity{What: fhirReference{Identifier: &fhirIdentifier{System: gatewayExtract, Value: x.ID}},
		Type: &fhirCoding{System: fhirEntityType, Code: "2", Display: "System Object"}, Detail: d}
}

// agentOf is who did an audited thing: an account (by id, named, with its professional id), or the gateway.
func agentOf(v historyView, actor string) fhirAgent {
	if id, ok := strings.CutPrefix(actor, "user:"); ok {
		return fhirAgent{Who: fhirReference{Identifier: &fhirIdentifier{System: gatewayUser, Value: id}, Display: v.Name(id)},
			AltID: v.People[id].ProfessionalID, Requestor: true}
	}
	return fhirAgent{Who: fhirReference{Display: actor}}
}

func professional(u approvals.User) string {
	if u.ProfessionalID == "" {
		return ""
	}
	return " (" + u.ProfessionalID + ")"
}

func joinCats(cs []approvals.Category) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

// fhirAction is the AuditEvent action of an audited verb: create, read, update or execute.
func fhirAction(action string) string {
	switch {
	case strings.HasSuffix(action, ".filed"), strings.HasSuffix(action, ".created"):
		return "C"
	case strings.HasSuffix(action, ".viewed"), strings.HasSuffix(action, ".retrieved"),
		strings.HasSuffix(action, ".delivered"), strings.HasSuffix(action, ".history_printed"), strings.HasSuffix(action, ".listed"):
		return "R"
	case strings.HasPrefix(action, "decision."):
		return "E"
	}
	return "U"
}

// auditEventID names an AuditEvent by the audit row it comes from (a held row or a retention summary).
func auditEventID(ev audit.TrailEvent) string {
	if ev.Summary {
		return "audit-summary-" + strconv.FormatInt(ev.Seq, 10)
	}
	return "audit-" + strconv.FormatInt(ev.Seq, 10)
}

func fhirInstant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
