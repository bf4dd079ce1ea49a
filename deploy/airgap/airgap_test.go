// Package airgap proves the network shape of a deployment with real connections: `make airgap-test` (root,
// Linux) builds the hosts as network namespaces joined by veth pairs, runs nginx with deploy/nginx-intake.conf,
// loads deploy/nftables.conf with nft on the gateway host, runs PostgreSQL on its own host, and checks who can
// reach whom.
package airgap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The hosts, with the addresses of deploy/nftables.conf, deploy/nginx-intake.conf and
// deploy/gatewayd.env.example:
//
//	remote 10.40.0.10 ── 10.40.0.2 dmz (nginx, routes) 10.30.0.2 ── 10.30.0.5 gateway (nft) 10.20.0.5 ── switch
//	                                                                     internal 10.20.0.100 ── switch ── db 10.20.0.10
//
// The DMZ and the gateway host route packets (as routers in a real network would), so that what stops a
// remote client from reaching the console or the database is the gateway host's firewall, not a missing route.
const (
	remoteIP   = "10.40.0.10"
	dmzOutIP   = "10.40.0.2"
	dmzInIP    = "10.30.0.2"
	gwDMZIP    = "10.30.0.5"
	gwIntIP    = "10.20.0.5"
	internalIP = "10.20.0.100"
	dbIP       = "10.20.0.10"

	intakeHost  = "demandes.hopital.example"
	consoleHost = "passerelle.interne.hopital.example"
)

const (
	envRun    = "GATEWAY_AIRGAP_TEST"   // make airgap-test sets it; without it the test skips
	envHelper = "GATEWAY_AIRGAP_HELPER" // set when this binary is re-executed as a probe or a listener
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		helperMain(mode, os.Getenv(envHelper+"_ARG"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// net is the test's topology: namespace names (unique per run) and what runs in them.
type network struct {
	t      *testing.T
	prefix string
	self   string // this test binary, re-executed as probes and listeners
	ns     map[string]string
	mu     sync.Mutex
	procs  []*exec.Cmd
}

func (n *network) name(host string) string { return n.ns[host] }

// run runs a command and fails the test with its output when it fails.
func (n *network) run(name string, args ...string) string {
	n.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs a command inside a host's namespace.
func (n *network) in(host string, args ...string) string {
	n.t.Helper()
	return n.run("ip", append([]string{"netns", "exec", n.name(host)}, args...)...)
}

// start starts a long-running command inside a host's namespace; it is killed at cleanup. ready, if not
// empty, is a line the command prints once it serves.
func (n *network) start(host string, env []string, ready string, args ...string) *exec.Cmd {
	n.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name(host)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	pw.Close()
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
	lines := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := pr.Read(buf)
			if k > 0 {
				n.mu.Lock()
				out.Write(buf[:k])
				s := out.String()
				n.mu.Unlock()
				select {
				case lines <- s:
				default:
				}
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	if ready == "" {
		return cmd
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case s, ok := <-lines:
			if ok && strings.Contains(s, ready) {
				return cmd
			}
			if !ok {
				n.mu.Lock()
				defer n.mu.Unlock()
				n.t.Fatalf("%s on %s ended before %q:\n%s", args[0], host, ready, out.String())
			}
		case <-deadline:
			n.mu.Lock()
			defer n.mu.Unlock()
			n.t.Fatalf("%s on %s: no %q within a minute:\n%s", args[0], host, ready, out.String())
		}
	}
}

// newNetwork builds the namespaces and links, and removes them at cleanup, whatever happens in between.
func newNetwork(t *testing.T) *network {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	n := &network{t: t, prefix: "ga" + hex.EncodeToString(b), self: self, ns: map[string]string{}}
	for _, h := range []string{"remote", "dmz", "gateway", "switch", "internal", "db"} {
		n.ns[h] = n.prefix + "-" + h
	}
	t.Cleanup(n.teardown)
	for _, name := range n.ns {
		n.run("ip", "netns", "add", name)
		n.run("ip", "-n", name, "link", "set", "lo", "up")
	}
	// link joins host a (interface ifA, address addrA) and host b with a veth pair; an empty address leaves the
	// end without one (a bridge port).
	link := func(a, ifA, addrA, b, ifB, addrB string) {
		tmpA, tmpB := n.prefix+ifA, n.prefix+ifB // unique in the root namespace while being created
		n.run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
		for _, e := range []struct{ host, tmp, name, addr string }{{a, tmpA, ifA, addrA}, {b, tmpB, ifB, addrB}} {
			n.run("ip", "link", "set", e.tmp, "netns", n.name(e.host))
			n.run("ip", "-n", n.name(e.host), "link", "set", e.tmp, "name", e.name)
			if e.addr != "" {
				n.run("ip", "-n", n.name(e.host), "addr", "add", e.addr, "dev", e.name)
			}
			n.run("ip", "-n", n.name(e.host), "link", "set", e.name, "up")
		}
	}
	link("remote", "eth0", remoteIP+"/24", "dmz", "out0", dmzOutIP+"/24")
	link("dmz", "in0", dmzInIP+"/24", "gateway", "dmz0", gwDMZIP+"/24")
	// The internal segment is a switch (a bridge) joining the gateway host, a workstation and the database.
	n.run("ip", "-n", n.name("switch"), "link", "add", "br0", "type", "bridge")
	n.run("ip", "-n", n.name("switch"), "link", "set", "br0", "up")
	for _, h := range []struct{ host, port, addr string }{{"gateway", "pg", gwIntIP + "/16"}, {"internal", "pi", internalIP + "/16"}, {"db", "pd", dbIP + "/16"}} {
		link(h.host, "int0", h.addr, "switch", h.port, "")
		n.run("ip", "-n", n.name("switch"), "link", "set", h.port, "master", "br0")
	}
	route := func(host string, args ...string) {
		n.run("ip", append([]string{"-n", n.name(host), "route", "add"}, args...)...)
	}
	route("remote", "default", "via", dmzOutIP)
	route("dmz", "10.20.0.0/16", "via", gwDMZIP)
	route("gateway", "10.40.0.0/24", "via", dmzInIP)
	for _, h := range []string{"internal", "db"} {
		route(h, "10.40.0.0/24", "via", gwIntIP)
		route(h, "10.30.0.0/24", "via", gwIntIP)
	}
	for _, h := range []string{"dmz", "gateway"} {
		n.in(h, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	}
	return n
}

func (n *network) teardown() {
	n.mu.Lock()
	procs := n.procs
	n.mu.Unlock()
	for _, c := range procs {
		c.Process.Kill()
		c.Wait()
	}
	for _, name := range n.ns {
		// Whatever still runs in a namespace was started by this test (nginx workers, PostgreSQL).
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				exec.Command("kill", "-9", pid).Run()
			}
		}
		exec.Command("ip", "netns", "del", name).Run()
	}
}

// check is one line of the reachability matrix.
type check struct {
	what  string
	from  string
	probe probe
	want  bool // reachable?
}

// probeFrom runs a probe inside host's namespace.
func (n *network) probeFrom(host string, p probe) (bool, string) {
	arg, _ := json.Marshal(p)
	cmd := exec.Command("ip", "netns", "exec", n.name(host), n.self)
	cmd.Env = append(os.Environ(), envHelper+"=probe", envHelper+"_ARG="+string(arg))
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return false, fmt.Sprintf("probe failed to run: %v %s", err, s)
	}
	return s == "ok", s
}

// matrix runs every check at once and returns the lines that did not come out as wanted, and the table.
func (n *network) matrix(checks []check) (wrong []string, table string) {
	got := make([]bool, len(checks))
	detail := make([]string, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { got[i], detail[i] = n.probeFrom(c.from, c.probe) })
	}
	wg.Wait()
	var b strings.Builder
	verdict := map[bool]string{true: "reachable", false: "blocked"}
	for i, c := range checks {
		mark := "ok "
		if got[i] != c.want {
			mark = "BAD"
			wrong = append(wrong, fmt.Sprintf("%s: %s, want %s (%s)", c.what, verdict[got[i]], verdict[c.want], detail[i]))
		}
		fmt.Fprintf(&b, "  %s %-62s %-9s %s\n", mark, c.what, verdict[got[i]], c.probe.Kind+" "+c.probe.Addr)
	}
	return wrong, b.String()
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// adapt copies a deploy file, replacing the values a hospital adapts (each must be found exactly once, so
// the file tested is the file shipped).
func adapt(t *testing.T, src, dst string, repl ...string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for i := 0; i+1 < len(repl); i += 2 {
		if strings.Count(s, repl[i]) != 1 {
			t.Fatalf("%s: %q should appear once", src, repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	if err := os.WriteFile(dst, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// need finds the tools the test needs; missing ones skip it, except under CI=true, where they fail it.
func need(t *testing.T) {
	t.Helper()
	if os.Getenv(envRun) == "" {
		t.Skipf("the air-gap test runs with `make airgap-test` (root, Linux), which sets %s", envRun)
	}
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("the air-gap test needs root (network namespaces, nft)")
	}
	for _, tool := range []string{"ip", "nft", "nginx", "runuser", "useradd"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("%s not found (apt-get install -y iproute2 nftables nginx)", tool)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
		fail("PostgreSQL's server binaries not found under /usr/lib/postgresql")
	}
}

// pgBin is the folder of PostgreSQL's server binaries (the newest installed).
func pgBin(t *testing.T) string {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	return filepath.Dir(m[len(m)-1])
}
