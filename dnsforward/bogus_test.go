package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// TestBogusPrivAsDnsmasq: with -bogus-priv, PTR and ANY questions of the
// reverse names of private addresses that the hosts files do not have get
// NXDOMAIN (AA, no SOA) without going upstream, as from dnsmasq 2.90 with
// --bogus-priv on the same hosts file and upstream: the IPv4 and IPv6
// ranges it treats as private, names of a zone (missing octets or nibbles
// zero), names it does not read as an address, other types and classes,
// public addresses (forwarded). An address Consul knows is still answered
// by the agent, as without the flag: dnsmasq with only server=/consul/
// answers it NXDOMAIN (README, differences).
func TestBogusPrivAsDnsmasq(t *testing.T) {
	requireDig(t)
	file := filepath.Join(t.TempDir(), "hosts")
	must(t, os.WriteFile(file, []byte(hostsTestFile), 0o644))
	dfAddr, dmAddr, _, _ := hostsPair(t, file, "bogus-priv")
	compareDnsmasq(t, dfAddr, dmAddr, []string{
		// IPv4: private, from the hosts file, public.
		"-x 10.1.2.3", "-x 10.1.0.1", "-x 10.1.0.4", "-x 192.168.5.5", "-x 172.16.0.1", "-x 172.31.255.255",
		"-x 172.32.0.1", "-x 172.15.0.1", "-x 127.0.0.5", "-x 0.0.0.1", "-x 169.254.1.1", "-x 192.0.2.1",
		"-x 198.51.100.1", "-x 203.0.113.1", "-x 255.255.255.255", "-x 100.64.0.1", "-x 8.8.8.8", "-x 192.0.3.1",
		// IPv6: private, from the hosts file, public.
		"-x fd00::7", "-x fd00::1", "-x fe80::1", "-x febf::1", "-x fec0::1", "-x ::1", "-x ::", "-x 2001:db8::1",
		"-x ::ffff:10.0.0.1", "-x ::ffff:8.8.8.8", "-x fc00::1", "-x 2001:4860::1",
		// Names of zones and names not read as an address.
		"10.in-addr.arpa PTR", "168.192.in-addr.arpa PTR", "16.172.in-addr.arpa PTR", "172.in-addr.arpa PTR",
		"1.127.in-addr.arpa PTR", "x.3.2.1.10.in-addr.arpa PTR", "1.1.1.3.2.1.10.in-addr.arpa PTR",
		"256.1.10.in-addr.arpa PTR", "266.in-addr.arpa PTR", "d.f.ip6.arpa PTR", "8.e.f.ip6.arpa PTR", "c.f.ip6.arpa PTR",
		"0.ip6.arpa PTR", "10.d.f.ip6.arpa PTR",
		// At most 75 characters (33 nibbles here), else not read.
		strings.Repeat("0.", 31) + "d.f.ip6.arpa PTR", strings.Repeat("0.", 32) + "d.f.ip6.arpa PTR",
		strings.Repeat("1.", 29) + "10.in-addr.arpa PTR", strings.Repeat("1.", 30) + "10.in-addr.arpa PTR",
		// Types, classes, letter case, EDNS, TCP.
		"3.2.1.10.in-addr.arpa ANY", "3.2.1.10.in-addr.arpa A", "3.2.1.10.in-addr.arpa TXT",
		"1.0.1.10.in-addr.arpa ANY", "1.0.1.10.in-addr.arpa A", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa ANY",
		"-c CH 3.2.1.10.in-addr.arpa PTR", "3.2.1.10.IN-ADDR.ARPA PTR", "+noedns -x 10.1.2.3", "+tcp -x 10.1.2.3",
		"+dnssec -x 10.1.2.3",
	})
	// The agent's own address: its PTR record from the agent, as without
	// -bogus-priv.
	a := consultest.Require(t, agent)
	got, want := dig(t, dfAddr, "-x", "127.0.0.1"), dig(t, a.DNSAddr(), "-x", "127.0.0.1")
	if len(want.answer) == 0 || got.status != want.status || !reflect.DeepEqual(set(got.answer), set(want.answer)) {
		t.Errorf("-x 127.0.0.1: %s\n%s\nConsul's DNS: %s\n%s", got.status, strings.Join(got.answer, "\n"), want.status, strings.Join(want.answer, "\n"))
	}
}
