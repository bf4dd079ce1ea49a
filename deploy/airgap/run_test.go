package airgap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

	// The gateway host.
	keyFile := filepath.Join(dir, "gateway.key")
	n.run(bin, "keys", "init", "--key-file", keyFile)
	n.start("gateway", nil, "console (internal)", bin, "serve",
		"--db", "postgres://postgres@"+dbIP+":5432/gatewayd?sslmode=disable", "--key-file", keyFile, "--data-dir", dir,
		"--intake-listen", gwDMZIP+":8080", "--console-listen", gwIntIP+":8081",
		"--console-allow", "10.20.0.0/16", "--trusted-proxies", dmzInIP+"/32",
		"--public-intake-url", "https://"+intakeHost, "--public-console-url", "https://"+consoleHost+":8081",
		"--tls-cert", gwCert.CertFile, "--tls-key", gwCert.KeyFile)

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
	t.Logf("air-gap test took %s", time.Since(began).Round(time.Second))
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
