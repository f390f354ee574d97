package wiresharktest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// Timeout bounds each wait on tshark: its start (it loads every dissector
// first), a probe showing up, its exit.
const Timeout = 20 * time.Second

// Tshark returns the path of tshark; see [peers.Require].
func Tshark(t testing.TB) string {
	t.Helper()
	return peers.Require(t, "tshark")
}

// DissectorPath returns the absolute path of tools/wireshark/dtlsresume.lua
// in this source tree.
func DissectorPath(t testing.TB) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("wiresharktest: cannot locate the source tree")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "tools", "wireshark", "dtlsresume.lua")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("wiresharktest: the dissector: %v", err)
	}
	return path
}

// LoadDissector is the tshark option that loads the repository's Lua
// dissector.
func LoadDissector(t testing.TB) []string {
	t.Helper()
	return []string{"-X", "lua_script:" + DissectorPath(t)}
}

// isolatedEnv is the environment for tshark: an empty home and
// configuration directory of the test's own, so neither a user's
// preferences nor a plugin they installed (an older copy of the dissector,
// say) take part.
func isolatedEnv(t testing.TB) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "WIRESHARK_CONFIG_DIR="+filepath.Join(home, "wireshark"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
}

// Capture is a running `tshark -i lo` on one UDP port.
type Capture struct {
	t       testing.TB
	proc    *peers.Process
	file    string
	port    int
	probe   *net.UDPConn
	probes  int
	stopped bool
}

// StartCapture starts capturing UDP datagrams to or from port on the
// loopback interface and returns once tshark has captured a probe sent to
// that port. If the test ends without [Capture.Stop], tshark is killed.
func StartCapture(t testing.TB, port int) *Capture {
	t.Helper()
	tshark := Tshark(t)
	file := filepath.Join(t.TempDir(), "capture.pcapng")
	// -P -T fields prints each captured datagram's source port and UDP
	// length while writing the file: that is how a probe is seen.
	p := peers.Start(t, tshark, "-n", "-i", "lo", "-f", "udp port "+strconv.Itoa(port), "-w", file,
		"-l", "-P", "-T", "fields", "-e", "udp.srcport", "-e", "udp.length")
	if err := p.WaitFor("Capturing on", Timeout); err != nil {
		t.Fatalf("tshark did not start capturing: %v", err)
	}
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { probe.Close() })
	c := &Capture{t: t, proc: p, file: file, port: port, probe: probe}
	c.sync()
	return c
}

// ProbePort is the source port of the probe datagrams, which the capture
// holds besides the traffic under test.
func (c *Capture) ProbePort() int { return c.probe.LocalAddr().(*net.UDPAddr).Port }

// sync sends a probe datagram of a length not sent before and waits until
// tshark reports it, resending it every 200 ms (the first ones may precede
// the capture's start).
func (c *Capture) sync() {
	c.t.Helper()
	c.probes++
	payload := []byte("dtlsresume-probe" + strings.Repeat(".", c.probes))
	seen := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\t%d$`, c.ProbePort(), 8+len(payload)))
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.port}
	deadline := time.Now().Add(Timeout)
	for {
		if _, err := c.probe.WriteToUDP(payload, dst); err != nil {
			c.t.Fatalf("probe: %v", err)
		}
		if _, err := c.proc.WaitForRegexp(seen, 200*time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("tshark did not report probe %d within %v; its output:\n%s", c.probes, Timeout, c.proc.Output())
		}
	}
}

// Stop makes sure everything sent so far is captured, stops tshark and
// returns the capture file (pcapng).
func (c *Capture) Stop() string {
	c.t.Helper()
	if c.stopped {
		return c.file
	}
	c.sync()
	if err := syscall.Kill(c.proc.Pid(), syscall.SIGINT); err != nil {
		c.t.Fatalf("stop tshark: %v", err)
	}
	code, err := c.proc.Wait(Timeout)
	if err != nil || code != 0 {
		c.t.Fatalf("tshark: exit %d, %v; output:\n%s", code, err, c.proc.Output())
	}
	c.stopped = true
	return c.file
}

// Field is one item of tshark's packet tree: a protocol or a field.
type Field struct {
	Name     string // filter name, e.g. "dtlsresume.offered"
	ShowName string // the line Wireshark shows, e.g. "Offered type: client_state (3)"
	Show     string // the value as text, e.g. "3"
	Value    string // the raw bytes in hex, when the field covers any
}

// Packet is one dissected frame: its fields in tree order (pre-order).
type Packet struct {
	Number int
	Fields []Field
}

// All returns the fields named name, in tree order.
func (p Packet) All(name string) []Field {
	var out []Field
	for _, f := range p.Fields {
		if f.Name == name {
			out = append(out, f)
		}
	}
	return out
}

// Shows returns the Show text of each field named name, in tree order.
func (p Packet) Shows(name string) []string {
	var out []string
	for _, f := range p.All(name) {
		out = append(out, f.Show)
	}
	return out
}

// Get returns the first field named name.
func (p Packet) Get(name string) (Field, bool) {
	for _, f := range p.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Has reports whether the packet has a field (or protocol) named name.
func (p Packet) Has(name string) bool {
	_, ok := p.Get(name)
	return ok
}

// pdmlNode is a <proto> or <field> element of tshark's PDML output.
type pdmlNode struct {
	Name     string     `xml:"name,attr"`
	ShowName string     `xml:"showname,attr"`
	Show     string     `xml:"show,attr"`
	Value    string     `xml:"value,attr"`
	Children []pdmlNode `xml:",any"`
}

func (n *pdmlNode) flatten(out []Field) []Field {
	out = append(out, Field{Name: n.Name, ShowName: n.ShowName, Show: n.Show, Value: n.Value})
	for i := range n.Children {
		out = n.Children[i].flatten(out)
	}
	return out
}

// ParsePDML decodes tshark's -T pdml output.
func ParsePDML(pdml []byte) ([]Packet, error) {
	var doc struct {
		Packets []struct {
			Protos []pdmlNode `xml:"proto"`
		} `xml:"packet"`
	}
	if err := xml.Unmarshal(pdml, &doc); err != nil {
		return nil, fmt.Errorf("wiresharktest: PDML: %w", err)
	}
	packets := make([]Packet, 0, len(doc.Packets))
	for _, dp := range doc.Packets {
		var p Packet
		for i := range dp.Protos {
			p.Fields = dp.Protos[i].flatten(p.Fields)
		}
		if f, ok := p.Get("frame.number"); ok {
			p.Number, _ = strconv.Atoi(f.Show)
		}
		packets = append(packets, p)
	}
	return packets, nil
}

// Read dissects file with tshark and options (e.g. LoadDissector(t), "-o",
// "tls.keylog_file:"+keys, "-Y", "coap") and returns its packets. A Lua
// error, in loading the dissector or in running it, fails the test.
func Read(t testing.TB, file string, options ...string) []Packet {
	t.Helper()
	args := append([]string{"-n", "-r", file, "-T", "pdml"}, options...)
	cmd := exec.Command(Tshark(t), args...)
	cmd.Env = isolatedEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Lua") {
		t.Fatalf("tshark %s: Lua error:\n%s", strings.Join(args, " "), stderr.String())
	}
	packets, err := ParsePDML(stdout.Bytes())
	if err != nil {
		t.Fatalf("tshark %s: %v", strings.Join(args, " "), err)
	}
	for _, p := range packets {
		for _, f := range p.Fields {
			if f.Name == "_ws.lua.error" {
				t.Fatalf("frame %d: Lua error in the dissector: %s", p.Number, f.ShowName)
			}
		}
	}
	return packets
}
