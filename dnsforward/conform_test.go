package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// compareExact asks each "name TYPE [dig options]" case of dnsforward at
// addr and of Consul's DNS at consulAddr with dig and compares status,
// flags (but RA) and every section's records with their letter case.
func compareExact(t *testing.T, addr, consulAddr string, cases []string) {
	t.Helper()
	for _, c := range cases {
		got, want := digBoth(t, addr, consulAddr, c)
		for _, s := range []struct {
			name      string
			got, want []string
		}{{"answer", got.answer, want.answer}, {"authority", got.auth, want.auth}, {"additional", got.extra, want.extra}} {
			if g, w := set(s.got), set(s.want); !reflect.DeepEqual(g, w) {
				t.Errorf("%s: %s\n%s\nConsul's DNS:\n%s", c, s.name, strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		}
	}
}

// TestLetterCaseLikeConsul: the names Consul writes in the question's
// letter case (the NS records' owner, the SOA and NS of the apex, a
// .virtual answer's owner) come in the same case from dnsforward, which
// passes these questions to the agent as the client wrote them.
func TestLetterCaseLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	addr := startSeeded(t, a)
	// A service with a sidecar proxy has a virtual IP (vweb.virtual.consul),
	// given with the proxy's registration in the catalog.
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "vweb1", Name: "vweb", Port: 80, Address: "10.9.0.1"})
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "vweb1-proxy", Name: "vweb-sidecar-proxy", Kind: api.ServiceKindConnectProxy,
		Port: 21000, Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "vweb", DestinationServiceID: "vweb1"}})
	waitSeeded(t, a, addr, map[string][]string{"vweb.service.consul A": {"10.9.0.1"}, "vweb.connect.consul A": {"127.0.0.1"}})
	if r := dig(t, a.DNSAddr(), "vweb.virtual.consul", "A"); len(r.answer) != 1 {
		t.Fatalf("no virtual IP for vweb from Consul's DNS:\n%s", r.raw)
	}
	compareExact(t, addr, a.DNSAddr(), []string{
		"VWEB.Virtual.CONSUL A", "vweb.virtual.Consul A", "Vweb.Virtual.Consul ANY", "VWEB.Connect.Consul A",
		"CONSUL SOA", "CONSUL NS", "Consul SOA", "Consul NS", "consul NS",
		"WEB.Service.CONSUL SOA", "WEB.Service.CONSUL NS", "Web.Service.Consul NS",
		"NoSuch.Service.Consul SOA", "Pq.Query.CONSUL SRV",
		"WEB.Connect.Consul A", "Web.Service.DC2.Consul A",
	})
}

// TestReverseNamesAnyTypeLikeConsul: Consul answers every question under
// arpa. as a reverse lookup, whatever its type (agent/dns.go handlePtr):
// an A, TXT, ANY or SRV question for a node's or service's reverse name
// gets its PTR record. dnsforward passes them to the agent as it does PTR
// questions; a name Consul does not know still goes to the upstreams.
func TestReverseNamesAnyTypeLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	up := startUpstream(t, outsideZone)
	addr := startSeeded(t, a, up.addr)
	var cases []string
	for _, n := range []string{"1.0.0.127.in-addr.arpa", "2.0.0.10.in-addr.arpa", "3.2.1.10.in-addr.arpa",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"} {
		for _, typ := range []string{"PTR", "A", "AAAA", "TXT", "ANY", "SRV", "MX", "SOA"} {
			cases = append(cases, n+" "+typ)
		}
	}
	cases = append(cases, "1.0.0.127.IN-ADDR.ARPA A", "2.0.0.10.in-addr.arpa A +subnet=192.0.2.0/24")
	compareWithConsul(t, addr, a.DNSAddr(), cases)
	// Not Consul's: the upstreams answer (here NXDOMAIN, from outsideZone).
	if got := dig(t, addr, "9.2.0.192.in-addr.arpa", "A"); got.status != "NXDOMAIN" {
		t.Errorf("an address Consul does not know: %s", got.raw)
	}
	if n := up.queries("9.2.0.192.in-addr.arpa.", "udp"); n != 1 {
		t.Errorf("upstream asked %d times for an address Consul does not know, want 1", n)
	}
}

// rawExchange sends pkt over UDP to addr and returns the reply's bytes
// (nil: none within 2 s).
func rawExchange(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf, err := roundTrip(t, conn, pkt, 2*time.Second)
	if err != nil {
		return nil
	}
	return buf
}

// replyShape is what of a reply the raw comparisons compare: the header
// but RA (dnsforward always sets it) and the additional count (Consul
// repeats records there), and the records of each section as sets (SOA
// serials and OPT records left out).
func replyShape(t *testing.T, b []byte) string {
	t.Helper()
	if b == nil {
		return "no reply"
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not unpack: %v (%x)", err, b)
	}
	m.RecursionAvailable = false
	var out []string
	out = append(out, fmt.Sprintf("id %d %s rcode %s aa %v tc %v rd %v ad %v cd %v counts %d/%d/%d", m.Id, dns.OpcodeToString[m.Opcode],
		dns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated, m.RecursionDesired, m.AuthenticatedData, m.CheckingDisabled,
		binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:])))
	for _, q := range m.Question {
		out = append(out, "question "+q.String())
	}
	for i, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		var rs []string
		for _, rr := range sec {
			if soa, ok := rr.(*dns.SOA); ok {
				c := *soa
				c.Serial = 0
				rr = &c
			}
			if rr.Header().Rrtype != dns.TypeOPT {
				rs = append(rs, fmt.Sprintf("%d %s", i, rr.String()))
			}
		}
		out = append(out, set(rs)...) // Consul repeats additional records
	}
	return strings.Join(out, "\n")
}

// compareRaw sends each packet to dnsforward at addr and to Consul's DNS
// and compares the replies' shapes.
func compareRaw(t *testing.T, addr, consulAddr string, pkts map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(pkts))
	for n := range pkts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		got, want := replyShape(t, rawExchange(t, addr, pkts[n])), replyShape(t, rawExchange(t, consulAddr, pkts[n]))
		if got != want {
			t.Errorf("%s: reply\n%s\nConsul's DNS:\n%s", n, got, want)
		}
	}
}

// TestMalformedLikeConsul: a malformed query gets from dnsforward the
// reply Consul's DNS gives it: FORMERR with the question echoed when the
// question could be read and the header's counts are ones Consul accepts,
// the header alone otherwise.
func TestMalformedLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	seed(t, a)
	_, addr := startServer(t, baseConfig(a))
	waitSeeded(t, a, addr, seededLast)
	ok := packQuery("mixedcase.service.consul.", dns.TypeA, false)
	with := func(i int, v byte) []byte {
		b := append([]byte(nil), ok...)
		b[i] = v
		return b
	}
	edns := packQuery("Web.Service.Consul.", dns.TypeSRV, true)
	cutOPT := append([]byte(nil), edns[:len(edns)-3]...)
	badOPT := append([]byte(nil), edns...)
	binary.BigEndian.PutUint16(badOPT[len(badOPT)-2:], 4) // rdlength 4, no data
	compareRaw(t, addr, a.DNSAddr(), map[string][]byte{
		"ancount 1, no answer":              with(7, 1),
		"nscount 1, no record":              with(9, 1),
		"arcount 2, no records":             with(11, 2),
		"OPT record cut":                    cutOPT,
		"OPT rdlength past the end":         badOPT,
		"ancount 5 (Consul rejects it)":     with(7, 5),
		"qdcount 2, one question":           with(5, 2),
		"label loop":                        append(append([]byte(nil), ok[:12]...), 0xc0, 0x0c, 0, 1, 0, 1),
		"question cut":                      ok[:len(ok)-3],
		"opcode UPDATE":                     with(2, ok[2]|5<<3),
		"header only, one question claimed": ok[:12],
		"no question":                       with(5, 0)[:12],
		"qdcount 2, AD set":                 func() []byte { b := with(5, 2); b[3] |= 0x20; return b }(),
		"trailing garbage":                  append(append([]byte(nil), ok...), 1, 2, 3, 4),
		"an undefined class":                append(append([]byte(nil), ok[:len(ok)-2]...), 0x12, 0x34),
		"an answer record in a query":       append(with(7, 1), 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4),
	})
}

// packClass is a query for name/qtype in class qclass (EDNS0 with edns).
func packClass(name string, qtype, qclass uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Question[0].Qclass = qclass
	m.Id = 4242
	if edns {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// TestOtherClassesLikeConsulAndDnsmasq: a question of class NONE, CHAOS,
// HESIOD or ANY for a name in the Consul domain (or a reverse name) gets
// the answer Consul's DNS gives, which does not look at the class (its IN
// records); outside the domain it is forwarded with its class, as dnsmasq
// forwards it, and gets the upstream's answer.
func TestOtherClassesLikeConsulAndDnsmasq(t *testing.T) {
	a := consultest.Require(t, agent)
	up := startUpstream(t, outsideZone)
	addr := startSeeded(t, a, up.addr)
	consul := map[string][]byte{}
	outside := map[string][]byte{}
	for _, c := range []uint16{dns.ClassNONE, dns.ClassCHAOS, dns.ClassHESIOD, dns.ClassANY, 0x1234} {
		cl := dns.Class(c).String()
		for _, q := range []struct {
			name  string
			qtype uint16
		}{{"mixedcase.service.consul.", dns.TypeA}, {"mixedcase.service.consul.", dns.TypeSRV}, {"MixedCase.Service.Consul.", dns.TypeA},
			{"nosuch.service.consul.", dns.TypeA}, {a.NodeName + ".node.consul.", dns.TypeA}, {"db.service.consul.", dns.TypeMX},
			{"consul.", dns.TypeSOA}, {"consul.", dns.TypeNS}, {"1.0.0.127.in-addr.arpa.", dns.TypePTR}, {"2.0.0.10.in-addr.arpa.", dns.TypeA}} {
			for _, edns := range []bool{false, true} {
				consul[fmt.Sprintf("%s %s %s edns %v", q.name, cl, dns.TypeToString[q.qtype], edns)] = packClass(q.name, q.qtype, c, edns)
			}
		}
		outside["legacy.example.net. A "+cl] = packClass("legacy.example.net.", dns.TypeA, c, false)
		outside["nosuch.example.org. A "+cl] = packClass("nosuch.example.org.", dns.TypeA, c, true)
	}
	compareRaw(t, addr, a.DNSAddr(), consul)
	dm := startDnsmasq(t, up.addr)
	for n, pkt := range outside {
		got, want := replyShape(t, rawExchange(t, addr, pkt)), replyShape(t, rawExchange(t, dm, pkt))
		if got != want {
			t.Errorf("%s: reply\n%s\ndnsmasq:\n%s", n, got, want)
		}
	}
}
