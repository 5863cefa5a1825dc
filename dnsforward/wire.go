package main

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// query is one parsed request. On the fast path raw and name point into the
// reader's buffers; clone before handing it to another goroutine.
type query struct {
	raw     []byte
	id      uint16
	rd      bool
	cd      bool   // checking disabled: copied into the reply (RFC 4035 section 3.1.6)
	name    []byte // lower-case presentation form with the final dot
	qtype   uint16
	qclass  uint16
	qEnd    int // end of the question in raw; 0 when parsed by the slow path
	edns    bool
	do      bool // DNSSEC OK (RFC 3225), in the OPT record
	udpSize int
	ecs     *dns.EDNS0_SUBNET // the client-subnet option asked with (RFC 7871), or nil
	tcp     bool
	msg     *dns.Msg       // the unpacked request (slow path, or unpacked later)
	from    netip.AddrPort // a UDP client's address (slow path): its repeats are told by it
}

func (q *query) clone() *query {
	c := *q
	c.raw = append([]byte(nil), q.raw...)
	c.name = append([]byte(nil), q.name...)
	return &c
}

// request returns the request unpacked (it is valid: parse accepted it).
func (q *query) request() *dns.Msg {
	if q.msg == nil {
		m := new(dns.Msg)
		if err := m.Unpack(q.raw); err != nil || len(m.Question) != 1 {
			// Cannot happen for a packet parseFast accepted; keep going
			// with what we know.
			m = new(dns.Msg)
			m.Id = q.id
			m.RecursionDesired = q.rd
			m.CheckingDisabled = q.cd
			m.Question = []dns.Question{{Name: string(q.name), Qtype: q.qtype, Qclass: q.qclass}}
		}
		q.msg = m
	}
	return q.msg
}

// udpLimit is the largest UDP answer the client takes.
func (q *query) limit() int {
	if q.tcp {
		return dns.MaxMsgSize
	}
	if !q.edns {
		return dns.MinMsgSize
	}
	return q.udpSize
}

const (
	parseOK       = 0
	parseNeedSlow = 1 // not the plain form: let miekg/dns unpack it
	parseDrop     = 2 // not a query at all: no answer
)

// maxUDPAnswer caps the EDNS0 buffer size a client may ask for.
const maxUDPAnswer = 4096

// ednsSize is the buffer size we advertise in our own OPT records.
const ednsSize = 1232

// parseFast reads the common form of a query without allocating: one
// question with a plain uncompressed name, optionally one OPT record, and
// nothing else. name is the scratch buffer the lower-cased name is put in.
func parseFast(raw []byte, name []byte, q *query) int {
	if len(raw) < 12 {
		return parseDrop
	}
	if raw[2]&0x80 != 0 { // QR: an answer sent to us
		return parseDrop
	}
	if (raw[2]>>3)&0x0f != 0 || raw[4] != 0 || raw[5] != 1 || raw[6]|raw[7]|raw[8]|raw[9] != 0 || raw[10] != 0 || raw[11] > 1 {
		return parseNeedSlow
	}
	off := 12
	name = name[:0]
	for {
		if off >= len(raw) {
			return parseNeedSlow
		}
		l := int(raw[off])
		off++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 || off+l > len(raw) {
			return parseNeedSlow
		}
		for _, c := range raw[off : off+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c == '.' || c == '\\' || c <= ' ' || c >= 0x7f || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$':
				return parseNeedSlow
			}
			name = append(name, c)
		}
		name = append(name, '.')
		off += l
		if len(name) > 254 {
			return parseNeedSlow
		}
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	if off+4 > len(raw) {
		return parseNeedSlow
	}
	q.raw = raw
	q.id = binary.BigEndian.Uint16(raw)
	q.rd = raw[2]&0x01 != 0
	q.cd = raw[3]&0x10 != 0
	q.name = name
	q.qtype = binary.BigEndian.Uint16(raw[off:])
	q.qclass = binary.BigEndian.Uint16(raw[off+2:])
	off += 4
	q.qEnd = off
	q.edns = false
	q.do = false
	q.udpSize = dns.MinMsgSize
	q.ecs = nil
	q.msg = nil
	if raw[11] == 0 {
		if off != len(raw) {
			return parseNeedSlow
		}
		return parseOK
	}
	// One OPT record: root name, type 41, class = size, ttl, rdlength.
	if off+11 > len(raw) || raw[off] != 0 || binary.BigEndian.Uint16(raw[off+1:]) != dns.TypeOPT || raw[off+6] != 0 {
		return parseNeedSlow
	}
	rdlen := int(binary.BigEndian.Uint16(raw[off+9:]))
	if off+11+rdlen != len(raw) {
		return parseNeedSlow
	}
	for o := off + 11; o+4 <= len(raw); o += 4 + int(binary.BigEndian.Uint16(raw[o+2:])) {
		if binary.BigEndian.Uint16(raw[o:]) == dns.EDNS0SUBNET {
			return parseNeedSlow // echoed in the reply: the slow path keeps it
		}
	}
	q.edns = true
	q.do = raw[off+7]&0x80 != 0
	q.udpSize = clampSize(int(binary.BigEndian.Uint16(raw[off+3:])))
	return parseOK
}

func clampSize(n int) int {
	if n < dns.MinMsgSize {
		return dns.MinMsgSize
	}
	if n > maxUDPAnswer {
		return maxUDPAnswer
	}
	return n
}

var errNotQuery = errors.New("not a query")

// parseSlow unpacks what parseFast declined. It returns an rcode to answer
// with (FORMERR, NOTIMP) when the packet is a bad query, or errNotQuery
// when it should be dropped.
func parseSlow(raw []byte, q *query) (rcode int, err error) {
	if len(raw) < 12 || raw[2]&0x80 != 0 {
		return 0, errNotQuery
	}
	// As Consul's DNS (miekg/dns's server, defaultMsgAcceptFunc) takes
	// them: other opcodes NOTIMP, and FORMERR for a header that does not
	// claim one question, at most one answer and authority record and two
	// additional ones, before anything else is read.
	if (raw[2]>>3)&0x0f != dns.OpcodeQuery {
		return dns.RcodeNotImplemented, errors.New("opcode not supported")
	}
	if binary.BigEndian.Uint16(raw[4:]) != 1 || binary.BigEndian.Uint16(raw[6:]) > 1 ||
		binary.BigEndian.Uint16(raw[8:]) > 1 || binary.BigEndian.Uint16(raw[10:]) > 2 {
		return dns.RcodeFormatError, errors.New("record counts not those of a query")
	}
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		return dns.RcodeFormatError, err
	}
	// Records claimed but missing at the end of the packet are not missed
	// (miekg/dns stops quietly there, and Consul answers such a query);
	// a packet without its question is refused, as by Consul's DNS (its
	// server mux has no name to route).
	if len(m.Question) != 1 {
		return dns.RcodeRefused, errors.New("no question")
	}
	q.raw = raw
	q.id = m.Id
	q.rd = m.RecursionDesired
	q.cd = m.CheckingDisabled
	q.name = []byte(strings.ToLower(m.Question[0].Name))
	q.qtype = m.Question[0].Qtype
	q.qclass = m.Question[0].Qclass
	q.qEnd = 0
	q.msg = m
	q.edns = false
	q.do = false
	q.udpSize = dns.MinMsgSize
	q.ecs = nil
	if opt := m.IsEdns0(); opt != nil {
		q.edns = true
		q.do = opt.Do()
		q.udpSize = clampSize(int(opt.UDPSize()))
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok && q.ecs == nil {
				q.ecs = e
			}
		}
		if opt.Version() != 0 {
			return dns.RcodeBadVers, errors.New("EDNS version not supported")
		}
	}
	return 0, nil
}

// errorReply is a bare answer to a bad packet: the header with the given
// rcode and, for FORMERR, the question when it could be read, as Consul's
// DNS (miekg/dns's server) answers: a packet that claims one question, at
// most one answer and authority record and two additional ones (else it
// rejects the header alone: defaultMsgAcceptFunc) and whose question
// unpacks gets it echoed.
func errorReply(raw []byte, rcode int, out []byte) []byte {
	out = append(out[:0], raw[:12]...)
	out[2] = 0x80 | (raw[2] & 0x7f)                    // QR, keep opcode, AA, TC and RD
	out[3] = 0x80 | (raw[3] & 0x30) | byte(rcode&0x0f) // RA, keep AD and CD
	for i := 4; i < 12; i++ {
		out[i] = 0
	}
	if rcode != dns.RcodeFormatError || binary.BigEndian.Uint16(raw[4:]) != 1 || binary.BigEndian.Uint16(raw[6:]) > 1 ||
		binary.BigEndian.Uint16(raw[8:]) > 1 || binary.BigEndian.Uint16(raw[10:]) > 2 {
		return out
	}
	name, off, err := dns.UnpackDomainName(raw, 12)
	if err != nil || off+4 > len(raw) {
		return out
	}
	m := dns.Msg{Question: []dns.Question{{Name: name, Qtype: binary.BigEndian.Uint16(raw[off:]), Qclass: binary.BigEndian.Uint16(raw[off+2:])}}}
	b, err := m.Pack()
	if err != nil {
		return out
	}
	out = append(out, b[12:]...)
	out[5] = 1
	return out
}

// rrSpan is where one resource record sits in a packed message.
type rrSpan struct {
	start, end int
	ttl        int // offset of the TTL field
	rrtype     uint16
	section    int // 0 answer, 1 authority, 2 additional
}

// walk lists the records of a packed message (for TTL patching and
// shuffling). It fails on anything malformed.
func walk(pk []byte) ([]rrSpan, int, error) {
	if len(pk) < 12 {
		return nil, 0, errors.New("short message")
	}
	qd := int(binary.BigEndian.Uint16(pk[4:]))
	counts := [3]int{int(binary.BigEndian.Uint16(pk[6:])), int(binary.BigEndian.Uint16(pk[8:])), int(binary.BigEndian.Uint16(pk[10:]))}
	off := 12
	for i := 0; i < qd; i++ {
		var err error
		if off, err = skipName(pk, off); err != nil {
			return nil, 0, err
		}
		off += 4
	}
	qEnd := off
	var spans []rrSpan
	for sec, n := range counts {
		for i := 0; i < n; i++ {
			start := off
			var err error
			if off, err = skipName(pk, off); err != nil {
				return nil, 0, err
			}
			if off+10 > len(pk) {
				return nil, 0, errors.New("short record")
			}
			t := binary.BigEndian.Uint16(pk[off:])
			rdlen := int(binary.BigEndian.Uint16(pk[off+8:]))
			end := off + 10 + rdlen
			if end > len(pk) {
				return nil, 0, errors.New("short rdata")
			}
			spans = append(spans, rrSpan{start: start, end: end, ttl: off + 4, rrtype: t, section: sec})
			off = end
		}
	}
	if qEnd > len(pk) {
		return nil, 0, errors.New("short question")
	}
	return spans, qEnd, nil
}

func skipName(pk []byte, off int) (int, error) {
	for n := 0; n < 128; n++ {
		if off >= len(pk) {
			return 0, errors.New("short name")
		}
		l := int(pk[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil
		case l&0xc0 != 0:
			return 0, errors.New("bad label")
		}
		off += 1 + l
	}
	return 0, errors.New("name too long")
}

// appendOPT adds our OPT record to a packed answer and counts it.
func appendOPT(out []byte) []byte {
	out = append(out, 0, 0, 41, byte(ednsSize>>8), byte(ednsSize&0xff), 0, 0, 0, 0, 0, 0)
	ar := binary.BigEndian.Uint16(out[10:]) + 1
	binary.BigEndian.PutUint16(out[10:], ar)
	return out
}
