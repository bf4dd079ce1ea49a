package airgap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// A probe is one connection attempt, made by this test binary re-executed inside a network namespace
// (`ip netns exec NS`), so that it leaves from that host's address through that host's routes and rules.
type probe struct {
	Kind string `json:"kind"` // tcp, udp, icmp, https
	Addr string `json:"addr"` // host:port (an IP address for icmp)
	// For https: the host name the client asks for (SNI and Host), the CA file it trusts, the path.
	Host string `json:"host,omitempty"`
	CA   string `json:"ca,omitempty"`
	Path string `json:"path,omitempty"`
}

// probeTimeout is how long a dropped packet is waited for: the namespaces are one machine, so an answer
// takes microseconds.
const probeTimeout = 1500 * time.Millisecond

// runProbe makes the attempt and says what happened: nil when the other side answered.
func runProbe(p probe) error {
	switch p.Kind {
	case "tcp":
		c, err := net.DialTimeout("tcp", p.Addr, probeTimeout)
		if err != nil {
			return err
		}
		return c.Close()
	case "udp":
		// The listener echoes: an answer proves the datagram went through (UDP has no handshake).
		c, err := net.Dial("udp", p.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		if _, err := c.Write([]byte("airgap")); err != nil {
			return err
		}
		buf := make([]byte, 16)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		return nil
	case "icmp":
		return ping(p.Addr)
	case "https":
		pem, err := os.ReadFile(p.CA)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		// Connect to the address given, whatever the name would resolve to (nothing resolves it here).
		client := &http.Client{Timeout: 2 * probeTimeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: p.Host},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, network, p.Addr)
			}}}
		_, port, _ := net.SplitHostPort(p.Addr)
		req, err := http.NewRequest(http.MethodGet, "https://"+p.Host+":"+port+p.Path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	return fmt.Errorf("unknown probe %q", p.Kind)
}

// ping sends one ICMP echo request on a raw socket and waits for the reply (the image has no ping command).
func ping(addr string) error {
	c, err := net.DialTimeout("ip4:icmp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := []byte{8, 0, 0, 0, 0x47, 0x57, 0, 1, 'a', 'i', 'r', 'g', 'a', 'p'} // echo request, id "GW", seq 1
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	c.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		// The raw socket hands the IP header too; the ICMP message follows it.
		ihl := int(buf[0]&0x0f) * 4
		if n > ihl && buf[ihl] == 0 { // echo reply
			return nil
		}
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// helperMain runs when the test binary is re-executed as a helper: a probe (prints "ok" or the error) or a
// listener (an HTTP or UDP echo server) that stands for a service on some host.
func helperMain(mode, arg string) {
	switch mode {
	case "probe":
		var p probe
		if err := json.Unmarshal([]byte(arg), &p); err != nil {
			fmt.Println("bad probe:", err)
			os.Exit(2)
		}
		if err := runProbe(p); err != nil {
			fmt.Println("refused:", err)
			return
		}
		fmt.Println("ok")
	case "flow":
		var f flowStep
		if err := json.Unmarshal([]byte(arg), &f); err != nil {
			fmt.Println("bad step:", err)
			os.Exit(2)
		}
		out, err := runFlow(f)
		if err != nil {
			fmt.Println("failed:", err)
			return
		}
		fmt.Println("ok", out)
	case "listen-http":
		ln, err := net.Listen("tcp", arg)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Println("listening")
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "reached\n") }))
	case "listen-udp":
		pc, err := net.ListenPacket("udp", arg)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Println("listening")
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	default:
		fmt.Println("unknown helper", mode)
		os.Exit(2)
	}
}
