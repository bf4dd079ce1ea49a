package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
	"gatewayd/gateway/strictjson"
)

// maxReceiptSize bounds what `receipt verify` reads: a receipt is a few kilobytes.
const maxReceiptSize = 1 << 20

func (a *app) receiptCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "receipt", Short: "Export a signed decision's receipt, or verify one offline"}

	var out string
	export := &cobra.Command{
		Use:   "export ID",
		Short: "Print the receipt of a decision (or of a request with a single one) as JSON, or write it with --out",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			master, err := keys.Load(a.cfg.KeyFile)
			if err != nil {
				return err
			}
			db, err := store.OpenExisting(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			if err := master.Bind(cmd.Context(), db); err != nil {
				return err
			}
			rc, err := approvals.LoadReceipt(cmd.Context(), db, master.Derive(keys.PurposeApprovals), args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(rc, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" || out == "-" {
				_, err := a.stdout.Write(b)
				return err
			}
			// A receipt names a patient: readable by its owner only, like the key file.
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return fmt.Errorf("write receipt: %w", err)
			}
			fmt.Fprintf(a.stderr, "wrote the receipt of decision %s to %s\n", rc.DecisionID, filepath.Clean(out))
			return nil
		},
	}
	export.Flags().StringVarP(&out, "out", "o", "", "file to write, mode 0600 (default: standard output)")

	var officersFile, rootsPath string
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a receipt offline; print what the officer signed (exit 0) or what fails (exit 1)",
		Long: "Check a receipt offline: the signature over the decision, and that the decision signs the receipt's " +
			"decision id and shown text. With --officers (the file `gatewayd officers export` writes) the signing key " +
			"must be the named officer's, enrolled and not revoked before the decision; with --attestation-roots (the " +
			"roots serve uses) its attestation must chain to them. Only signed fields are printed.",
		Args: cobra.ExactArgs(1),
		// Offline on purpose: no configuration, database, key file or network. This replaces the root's
		// configuration loading, so that nothing the check does not need can make it fail.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			fails := func(err error) error {
				return &exitError{code: 1, err: fmt.Errorf("receipt %s FAILS: %w", args[0], err)}
			}
			rc, err := readReceipt(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			d, err := approvals.VerifyReceipt(rc)
			if err != nil {
				return fails(err)
			}
			signer, err := checkSigner(rc, d, officersFile, rootsPath)
			if err != nil {
				return fails(err)
			}
			fmt.Fprintf(a.stdout, "Receipt OK: the signature of credential %x verifies over this decision (user present and verified, RP id %s, origin %s).\n",
				[]byte(rc.CredentialID), rc.RPID, rc.Origin)
			fmt.Fprintln(a.stdout, signer)
			fmt.Fprintf(a.stdout, "\nEverything below is signed by that key (the decision, and through its shown_sha256 the text shown):\n\n%s", d.Summary())
			fmt.Fprintf(a.stdout, "Audit chain anchor at preparation: row %d, hash %s\n", d.AuditAnchor.Seq, d.AuditAnchor.Hash)
			fmt.Fprintf(a.stdout, "\nWhat the review page showed the officer (SHA-256 %s):\n%s\n", d.ShownSHA256, rc.Shown)
			return nil
		},
	}
	verify.Flags().StringVar(&officersFile, "officers", "", "officers' key register (gatewayd officers export) the signing key must be in")
	verify.Flags().StringVar(&rootsPath, "attestation-roots", "", "MDS3 blob, PEM file or folder of roots the key's attestation must chain to (needs --officers)")
	cmd.AddCommand(export, verify)
	return cmd
}

// checkSigner checks the receipt's key against the officers' register (and the attestation roots) when given,
// and says in one line what was, or was not, established about who signed.
func checkSigner(rc approvals.Receipt, d approvals.Decision, officersFile, rootsPath string) (string, error) {
	if officersFile == "" {
		if rootsPath != "" {
			return "", errors.New("--attestation-roots needs --officers: the roots check the keys of the register")
		}
		return "Signer NOT checked: the receipt's own key verifies it, and anyone can make such a key. Give --officers " +
			"(gatewayd officers export) and --attestation-roots to check that an officer's certified key signed.", nil
	}
	f, err := os.Open(officersFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	reg, err := identity.ReadOfficersRegister(io.LimitReader(f, maxRegisterSize))
	if err != nil {
		return "", err
	}
	var anchors *identity.TrustAnchors
	if rootsPath != "" {
		if anchors, err = identity.LoadTrustAnchors(rootsPath); err != nil {
			return "", err
		}
	}
	preparedAt, err := time.Parse(approvals.TimeFormat, d.IssuedAt)
	if err != nil {
		return "", fmt.Errorf("issued_at: %w", err)
	}
	k, err := reg.CheckSigner(identity.Signed{CredentialID: rc.CredentialID, PublicKey: rc.PublicKey, OfficerID: d.OfficerID,
		PreparedAt: preparedAt, AnchorSeq: d.AuditAnchor.Seq}, anchors)
	if err != nil {
		return "", err
	}
	line := fmt.Sprintf("Signer: officer %s (%s, professional id %q, from the register): key enrolled %s (audit row %d), not revoked before the decision",
		k.OfficerID, k.Name, k.ProfessionalID, k.EnrolledAt, k.Enrolled.Seq)
	if anchors == nil {
		return line + "; attestation NOT checked (no --attestation-roots).", nil
	}
	return line + fmt.Sprintf("; its %s attestation chains to the given roots (authenticator model %s): a certified hardware key.",
		k.Attestation.Format, k.AAGUID), nil
}

// maxRegisterSize bounds what --officers reads: a few kilobytes per key.
const maxRegisterSize = 64 << 20

func readReceipt(path string) (approvals.Receipt, error) {
	f, err := os.Open(path)
	if err != nil {
		return approvals.Receipt{}, fmt.Errorf("read receipt: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if n, err := buf.ReadFrom(io.LimitReader(f, maxReceiptSize+1)); err != nil {
		return approvals.Receipt{}, fmt.Errorf("read receipt: %w", err)
	} else if n > maxReceiptSize {
		return approvals.Receipt{}, errors.New("read receipt: larger than 1 MiB, not a receipt")
	}
	var rc approvals.Receipt
	// Strict first: a duplicate or case-variant name would otherwise be read as the one it shadows.
	if err := strictjson.Check(buf.Bytes(), strictjson.Names(rc)...); err != nil {
		return approvals.Receipt{}, fmt.Errorf("receipt %s is not a receipt file: %w", path, err)
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return approvals.Receipt{}, fmt.Errorf("receipt %s is not a receipt file: %w", path, err)
	}
	return rc, nil
}
