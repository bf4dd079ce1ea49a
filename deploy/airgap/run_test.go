package airgap

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatewayd/gateway/identity/attesttest"
	"gatewayd/gateway/tlstest"
)

// TestAirGap builds the network, starts PostgreSQL, gatewayd and nginx on their hosts, and checks the whole
// reachability matrix with real connections: first without the firewall (every probe gets through, so each
// "blocked" later is the firewall's doing), then with deploy/nftables.conf loaded, then with one rule of it
// broken, which the check must catch.
func TestAirGap(t *testing.T) {
	need(t)
	began := time.Now()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatewayd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gatewayd")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	n := newNetwork(t)

	// The database host: a PostgreSQL cluster of its own (initdb refuses root: a dedicated user runs it).
	if exec.Command("id", "pgtest").Run() != nil {
		n.run("useradd", "--create-home", "pgtest")
	}
	pgData, err := os.MkdirTemp("", "gatewayd-airgap-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pgData) })
	n.run("chown", "pgtest", pgData)
	pg := pgBin(t)
	n.run("runuser", "-u", "pgtest", "--", filepath.Join(pg, "initdb"), "-D", pgData, "-A", "trust", "-U", "postgres", "--no-sync")
	hba, err := os.OpenFile(filepath.Join(pgData, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	hba.WriteString("host all all 10.20.0.0/16 trust\n")
	hba.Close()
	n.start("db", nil, "ready to accept connections", "runuser", "-u", "pgtest", "--", filepath.Join(pg, "postgres"), "-D", pgData,
		"-c", "listen_addresses="+dbIP, "-p", "5432", "-c", "unix_socket_directories="+pgData, "-c", "fsync=off")
	n.in("db", "runuser", "-u", "pgtest", "--", filepath.Join(pg, "createdb"), "-h", dbIP, "-U", "postgres", "gatewayd")

	// Certificates: one CA for the test; gatewayd's names both public hosts, the proxy's the intake's.
	ca := tlstest.NewCA(t)
	caFile := ca.WriteCA(t, dir)
	gwCert := ca.Issue(t, dir, "gateway-tls", intakeHost, consoleHost)
	proxyCert := ca.Issue(t, dir, "proxy-tls", intakeHost)

	// The officer's hardware key: a vendor's root (--attestation-roots) and the attestation certificate.
	aaguid := [16]byte{0x47, 0x57, 0x61, 0x69, 0x72, 0x67, 0x61, 0x70, 1, 2, 3, 4, 5, 6, 7, 8}
	vendorRoot, attCert, attKey := attesttest.VendorCA(t, aaguid)
	rootsFile, attFile := filepath.Join(dir, "vendor-root.pem"), filepath.Join(dir, "attestation.pem")
	writePEM(t, rootsFile, pem.Block{Type: "CERTIFICATE", Bytes: vendorRoot.Raw})
	keyDER, _ := x509.MarshalECPrivateKey(attKey)
	writePEM(t, attFile, pem.Block{Type: "CERTIFICATE", Bytes: attCert.Raw}, pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})

	// The gateway host: the same settings for serve and for the CLI run beside it.
	keyFile := filepath.Join(dir, "gateway.key")
	n.run(bin, "keys", "init", "--key-file", keyFile)
	settings := []string{"--db", "postgres://postgres@" + dbIP + ":5432/gatewayd?sslmode=disable", "--key-file", keyFile,
		"--data-dir", dir, "--public-intake-url", "https://" + intakeHost, "--public-console-url", "https://" + consoleHost + ":8081"}
	n.start("gateway", nil, "console (internal)", append(append([]string{bin, "serve"}, settings...),
		"--intake-listen", gwDMZIP+":8080", "--console-listen", gwIntIP+":8081",
		"--console-allow", "10.20.0.0/16", "--trusted-proxies", dmzInIP+"/32",
		"--tls-cert", gwCert.CertFile, "--tls-key", gwCert.KeyFile, "--attestation-roots", rootsFile)...)

	// The DMZ: nginx with deploy/nginx-intake.conf, its certificate paths and log adapted.
	ngx := filepath.Join(dir, "nginx")
	os.MkdirAll(ngx, 0o755)
	adapt(t, filepath.Join(repoRoot(), "deploy", "nginx-intake.conf"), filepath.Join(ngx, "intake.conf"),
		"/etc/nginx/tls/intake.pem", proxyCert.CertFile, "/etc/nginx/tls/intake.key", proxyCert.KeyFile,
		"/etc/nginx/tls/gateway-ca.pem", caFile, "/var/log/nginx/intake.access.log", filepath.Join(ngx, "access.log"))
	mainConf := "pid " + filepath.Join(ngx, "nginx.pid") + ";\nerror_log " + filepath.Join(ngx, "error.log") +
		";\nevents {}\nhttp {\n\tinclude " + filepath.Join(ngx, "intake.conf") + ";\n}\n"
	if err := os.WriteFile(filepath.Join(ngx, "nginx.conf"), []byte(mainConf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.in("dmz", "nginx", "-t", "-q", "-c", filepath.Join(ngx, "nginx.conf"))
	n.start("dmz", nil, "", "nginx", "-c", filepath.Join(ngx, "nginx.conf"), "-g", "daemon off;")

	// Services that stand for whatever else is out there: web and DNS on the internal segment, web remotely.
	for _, l := range []struct{ host, mode, addr string }{{"internal", "listen-http", internalIP + ":80"},
		{"internal", "listen-udp", internalIP + ":53"}, {"remote", "listen-http", remoteIP + ":80"}} {
		n.start(l.host, []string{envHelper + "=" + l.mode, envHelper + "_ARG=" + l.addr}, "listening", n.self)
	}

	toIntake := probe{Kind: "https", Addr: dmzOutIP + ":443", Host: intakeHost, CA: caFile, Path: "/healthz"}
	n.waitFor("remote", toIntake)
	checks := []check{
		{"remote → proxy → intake (HTTPS /healthz)", "remote", toIntake, true},
		{"remote → intake directly", "remote", probe{Kind: "tcp", Addr: gwDMZIP + ":8080"}, false},
		{"remote → console", "remote", probe{Kind: "tcp", Addr: gwIntIP + ":8081"}, false},
		{"remote → database", "remote", probe{Kind: "tcp", Addr: dbIP + ":5432"}, false},
		{"proxy → intake", "dmz", probe{Kind: "tcp", Addr: gwDMZIP + ":8080"}, true},
		{"proxy → console", "dmz", probe{Kind: "tcp", Addr: gwIntIP + ":8081"}, false},
		{"proxy → database", "dmz", probe{Kind: "tcp", Addr: dbIP + ":5432"}, false},
		{"internal → console (HTTPS /readyz)", "internal", probe{Kind: "https", Addr: gwIntIP + ":8081", Host: consoleHost, CA: caFile, Path: "/readyz"}, true},
		{"internal → intake", "internal", probe{Kind: "tcp", Addr: gwDMZIP + ":8080"}, false},
		{"gateway host → database", "gateway", probe{Kind: "tcp", Addr: dbIP + ":5432"}, true},
		{"gateway host → HTTP, internal segment", "gateway", probe{Kind: "tcp", Addr: internalIP + ":80"}, false},
		{"gateway host → HTTP, remote segment", "gateway", probe{Kind: "tcp", Addr: remoteIP + ":80"}, false},
		{"gateway host → DNS, internal segment", "gateway", probe{Kind: "udp", Addr: internalIP + ":53"}, false},
		{"gateway host → ICMP echo, internal segment", "gateway", probe{Kind: "icmp", Addr: internalIP}, false},
		{"gateway host → ICMP echo, remote segment", "gateway", probe{Kind: "icmp", Addr: remoteIP}, false},
	}

	// Without the firewall, everything answers: the probes and the routes work.
	open := make([]check, len(checks))
	for i, c := range checks {
		c.want = true
		open[i] = c
	}
	if wrong, table := n.matrix(open); len(wrong) > 0 {
		t.Fatalf("without the firewall some probes fail, so the test proves nothing:\n%s%s", table, strings.Join(wrong, "\n"))
	}

	nftables := filepath.Join(repoRoot(), "deploy", "nftables.conf")
	n.in("gateway", "nft", "-f", nftables)
	wrong, table := n.matrix(checks)
	t.Logf("reachability with deploy/nftables.conf on the gateway host:\n%s", table)
	if len(wrong) > 0 {
		t.Fatalf("the air gap leaks or blocks what it must not:\n%s", strings.Join(wrong, "\n"))
	}

	t.Run("a broken rule is caught", func(t *testing.T) {
		// The console rule without its source: the console open to every network.
		broken := filepath.Join(dir, "nftables-broken.conf")
		adapt(t, nftables, broken, "ip saddr $INTERNAL_NETS tcp dport $CONSOLE_PORT accept", "tcp dport $CONSOLE_PORT accept")
		n.in("gateway", "nft", "-f", broken)
		defer n.in("gateway", "nft", "-f", nftables)
		wrong, table := n.matrix(checks)
		t.Logf("with the console rule broken:\n%s", table)
		if len(wrong) == 0 || !strings.Contains(strings.Join(wrong, "\n"), "remote → console") {
			t.Fatalf("the broken rule went unnoticed: %v", wrong)
		}
	})

	// Through the air gap as it stands: the doctor files from the remote segment through the proxy, the officer
	// signs from the internal segment with a hardware key, the doctor sees the approval.
	n.in("gateway", append(append([]string{bin, "import"}, settings...),
		filepath.Join(repoRoot(), "testdata", "fhir", "bundles", "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"))...)
	invite := func(role, name, pro string) string {
		out := n.in("gateway", append([]string{bin, "invite", "--role", role, "--name", name, "--professional-id", pro}, settings...)...)
		m := regexp.MustCompile(`/invite/([A-Za-z0-9_-]{43})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("invite %s: %q", role, out)
		}
		return m[1]
	}
	state := t.TempDir()
	doctor := flowStep{Addr: dmzOutIP + ":443", Origin: "https://" + intakeHost, CA: caFile, State: state}
	officer := flowStep{Step: "sign", Addr: gwIntIP + ":8081", Origin: "https://" + consoleHost + ":8081", CA: caFile,
		Attest: attFile, AAGUID: hex.EncodeToString(aaguid[:])}
	doctor.Step, doctor.Token = "file", invite("requester", "Dr Remote", "10001234567")
	id := n.flow("remote", doctor)
	officer.Token, officer.ID = invite("officer", "Officer Internal", "10007654321"), id
	if status := n.flow("internal", officer); status != "approved" {
		t.Fatalf("the officer's signature: %q", status)
	}
	doctor.Step, doctor.ID = "status", id
	if status := n.flow("remote", doctor); status != "approved" {
		t.Fatalf("the doctor sees %q", status)
	}
	t.Logf("request %s filed from the remote segment, signed from the internal one, seen approved remotely", id)
	if out := n.in("gateway", append([]string{bin, "audit", "verify"}, settings...)...); !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: %s", out)
	}
	t.Logf("air-gap test took %s", time.Since(began).Round(time.Second))
}

// flow runs one step of the request's life on host and returns what it printed after "ok".
func (n *network) flow(host string, s flowStep) string {
	n.t.Helper()
	arg, _ := json.Marshal(s)
	out := n.in(host, "env", envHelper+"=flow", envHelper+"_ARG="+string(arg), n.self)
	out = strings.TrimSpace(out)
	if !strings.HasPrefix(out, "ok ") {
		n.t.Fatalf("%s on %s: %s", s.Step, host, out)
	}
	return strings.TrimPrefix(out, "ok ")
}

func writePEM(t *testing.T, path string, blocks ...pem.Block) {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(&bl)...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls a probe from host until it gets through (the proxy and gatewayd are starting), or fails.
func (n *network) waitFor(host string, p probe) {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, detail := n.probeFrom(host, p)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s never reached %s: %s", host, p.Addr, detail)
		}
		<-time.After(100 * time.Millisecond)
	}
}
