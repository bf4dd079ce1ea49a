package airgap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"

	vw "github.com/descope/virtualwebauthn"

	"gatewayd/gateway/identity/attesttest"
	"gatewayd/gateway/identity/identitytest"
)

// A step of the request's life, run by this binary re-executed on the remote or the internal host: the
// doctor registers through the proxy and files, the officer registers a hardware key on the console and signs,
// the doctor reads the outcome. Nothing else reaches the gateway.
type flowStep struct {
	Step   string `json:"step"` // file, sign, status
	Addr   string `json:"addr"` // where to connect (the proxy, or the console)
	Origin string `json:"origin"`
	CA     string `json:"ca"`
	Token  string `json:"token,omitempty"`  // invitation
	State  string `json:"state,omitempty"`  // folder keeping the doctor's session between steps
	ID     string `json:"id,omitempty"`     // the request, for sign and status
	Attest string `json:"attest,omitempty"` // PEM file of the vendor's attestation certificate and key
	AAGUID string `json:"aaguid,omitempty"` // hex, the model the certificate names
}

// browser is a client of one origin that connects to addr, keeps cookies and sends Origin and the CSRF token.
type browser struct {
	c      *http.Client
	origin string
	csrf   string
}

func newBrowser(s flowStep) (*browser, error) {
	pemCA, err := os.ReadFile(s.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	jar, _ := cookiejar.New(nil)
	return &browser{origin: s.Origin, c: &http.Client{Jar: jar, Timeout: 2 * probeTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, s.Addr)
			}}}}, nil
}

var csrfMeta = regexp.MustCompile(`name="csrf-token" content="([^"]+)"`)

// page loads a page and keeps its CSRF token.
func (b *browser) page(path string) error {
	resp, err := b.c.Get(b.origin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := csrfMeta.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	b.csrf = string(m[1])
	return nil
}

// post sends a JSON or form body and decodes a JSON answer into out; it fails on any status but want.
func (b *browser) post(path, ctype string, body []byte, want int, out any) error {
	req, _ := http.NewRequest(http.MethodPost, b.origin+path, bytes.NewReader(body))
	req.Header.Set("Origin", b.origin)
	req.Header.Set("X-CSRF-Token", b.csrf)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	resp, err := b.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// register accepts an invitation with key, attested by attest (nil: none), and leaves the browser signed in.
func (b *browser) register(token string, k *identitytest.Key, attest func(vw.AttestationOptions) ([]byte, error)) error {
	if err := b.page("/invite/" + token); err != nil {
		return err
	}
	var begun struct {
		Ceremony string          `json:"ceremony"`
		Options  json.RawMessage `json:"options"`
	}
	if err := b.post("/auth/register/begin", "application/json", []byte(`{"token":"`+token+`"}`), http.StatusOK, &begun); err != nil {
		return err
	}
	var resp []byte
	var err error
	if attest == nil {
		resp, err = k.Attest(begun.Options)
	} else {
		ao, perr := vw.ParseAttestationOptions(string(begun.Options))
		if perr != nil {
			return perr
		}
		k.Auth.Options.UserHandle = []byte(ao.UserID)
		resp, err = attest(*ao)
	}
	if err != nil {
		return err
	}
	var done struct {
		Redirect string `json:"redirect"`
	}
	if err := b.post("/auth/register/finish?ceremony="+url.QueryEscape(begun.Ceremony), "application/json", resp, http.StatusOK, &done); err != nil {
		return err
	}
	return b.page(done.Redirect) // the user's home page: the CSRF token is now the session's
}

func runFlow(s flowStep) (string, error) {
	b, err := newBrowser(s)
	if err != nil {
		return "", err
	}
	switch s.Step {
	case "file":
		if err := b.register(s.Token, identitytest.NewKey(s.Origin), nil); err != nil {
			return "", fmt.Errorf("register the doctor: %w", err)
		}
		filing, _ := json.Marshal(map[string]any{"patient_system": "https://github.com/synthetichealth/synthea",
			"patient_value": "ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423", "categories": []string{"conditions", "immunizations"},
			"purpose": "care_continuity", "justification": "Admitted tonight; previous care needed.", "urgency": "urgent",
			"delivery": "requester"})
		var filed struct{ ID string }
		if err := b.post("/api/v1/requests", "application/json", filing, http.StatusCreated, &filed); err != nil {
			return "", fmt.Errorf("file: %w", err)
		}
		return filed.ID, saveSession(s.State, b)
	case "sign":
		k := identitytest.NewKey(s.Origin)
		cert, key, err := loadAttestation(s.Attest)
		if err != nil {
			return "", err
		}
		aaguid, err := hex.DecodeString(s.AAGUID)
		if err != nil || len(aaguid) != 16 {
			return "", fmt.Errorf("aaguid %q", s.AAGUID)
		}
		copy(k.Auth.Aaguid[:], aaguid)
		attest := func(ao vw.AttestationOptions) ([]byte, error) {
			return attesttest.PackedResponse(k.RP, k.Auth, k.Cred, ao, cert, key, false)
		}
		if err := b.register(s.Token, k, attest); err != nil {
			return "", fmt.Errorf("register the officer's key: %w", err)
		}
		form := url.Values{"verdict": {"approve"}, "categories": {"conditions", "immunizations"}, "retriever": {"requester"},
			"expires_hours": {"24"}, "csrf": {b.csrf}}
		var prepared struct {
			Options json.RawMessage `json:"options"`
			SignURL string          `json:"sign_url"`
		}
		if err := b.post("/review/"+s.ID+"/prepare", "application/x-www-form-urlencoded", []byte(form.Encode()), http.StatusOK, &prepared); err != nil {
			return "", fmt.Errorf("prepare: %w", err)
		}
		assertion, err := k.Assert(prepared.Options)
		if err != nil {
			return "", err
		}
		var signed struct{ Status string }
		if err := b.post(prepared.SignURL, "application/json", assertion, http.StatusOK, &signed); err != nil {
			return "", fmt.Errorf("sign: %w", err)
		}
		return signed.Status, nil
	case "status":
		if err := loadSession(s.State, b); err != nil {
			return "", err
		}
		resp, err := b.c.Get(s.Origin + "/api/v1/requests/" + s.ID)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var r struct{ Status string }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status: %d %v", resp.StatusCode, err)
		}
		return r.Status, nil
	}
	return "", fmt.Errorf("unknown step %q", s.Step)
}

// saveSession keeps the doctor's session cookies between two runs of the helper (each step is a new process).
func saveSession(dir string, b *browser) error {
	u, _ := url.Parse(b.origin)
	var kept []string
	for _, c := range b.c.Jar.Cookies(u) {
		kept = append(kept, c.Name+"="+c.Value)
	}
	return os.WriteFile(dir+"/cookies", []byte(strings.Join(kept, "\n")), 0o600)
}

func loadSession(dir string, b *browser) error {
	raw, err := os.ReadFile(dir + "/cookies")
	if err != nil {
		return err
	}
	u, _ := url.Parse(b.origin)
	var cookies []*http.Cookie
	for _, line := range strings.Split(string(raw), "\n") {
		if name, value, ok := strings.Cut(line, "="); ok {
			cookies = append(cookies, &http.Cookie{Name: name, Value: value, Path: "/", Secure: true})
		}
	}
	b.c.Jar.SetCookies(u, cookies)
	return nil
}

func loadAttestation(path string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var cert *x509.Certificate
	var key *ecdsa.PrivateKey
	for block, rest := pem.Decode(raw); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "CERTIFICATE":
			cert, err = x509.ParseCertificate(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if cert == nil || key == nil {
		return nil, nil, fmt.Errorf("%s: want a certificate and an EC private key", path)
	}
	return cert, key, nil
}
