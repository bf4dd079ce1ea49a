// Package approvals is the domain core of the gateway: requests filed by remote doctors, the scope they ask
// for, the policy that bounds decisions, officers' decisions signed with a WebAuthn key in a canonical form,
// the receipts that let anyone re-check a signature offline, and the one-time extracts a final approval
// releases.
//
// It knows no HTTP. What it needs from records, identity and the clock it declares as small interfaces
// (deps.go) that the gateway wires in. Every transition is one transaction (store.Tx) holding its audit row
// (audit.Append): nothing changes without its trace.
package approvals
