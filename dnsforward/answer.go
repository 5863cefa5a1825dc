package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// answer is a packed response kept in memory and sent by copying: the ID,
// RD bit and the question's letter case are patched in, fixed-size answer
// records are shuffled in place, TTLs of forwarded answers are counted down.
type answer struct {
	packed []byte   // ID 0, question in lower case, no OPT
	perms  [][]byte // other orders of the same answer (SRV), chosen at random
	rcode  int
	zone   int

	// In-place shuffle of answer records all rrSize long from anOff.
	anOff, anCount, rrSize int
	// limit > 0: send only this many answer records, a different choice
	// each time (dns_config.a_record_limit); set only when the answer
	// records end the packed message.
	limit int
	// anEnds: the fixed-size answer records end the message (nothing in
	// the authority or additional sections), so it can be cut in place.
	anEnds bool
	// nAnswer is how many answer records a reply carries (after limit).
	nAnswer int
	// cuts are the packed orders (perms, or packed) cut to a client's
	// size with TC set, built on first need per size (see cut).
	cuts *cutCache
	// fixedCase: names of the packed answer do not take the question's
	// letter case from compression pointers to it: it holds a CNAME record
	// (a host-name address), whose target and the target's records are
	// written as the address was registered, whatever the question's
	// letter case, or it is packed without compression (noCompress).
	fixedCase bool
	// noCompress: packed without name compression, and cut for a client
	// measured so, as Consul's DNS packs with dns_config.disable_compression.
	noCompress bool

	// Forwarded answers: TTL offsets, time stored (unix ns, the start of
	// the second it was stored in) and expiry (unix ns).
	ttls      []int
	stored    int64
	expires   int64
	staleEnd  int64
	negative  bool
	watch     *watcher // Consul answers: the watch it came from
	servedTTL uint32   // for stale upstream answers

	// staleChase: a Consul answer holding a host-name target's records
	// kept from the agent's last good answer (its DNS cannot be asked).
	staleChase bool
}

// newAnswer packs m (without OPT) and records what the hot path needs.
// shuffle asks for the answer section to be shuffled on each use; ttls asks
// for TTL positions (forwarded answers).
func newAnswer(m *dns.Msg, zone int, shuffle, ttls bool) (*answer, error) {
	return newAnswerLimit(m, zone, shuffle, ttls, 0, true)
}

// consulAnswer is newAnswerLimit for an answer of the Consul domain,
// compressed unless the agent's dns_config.disable_compression is set.
func consulAnswer(m *dns.Msg, st *dnsSettings, shuffle bool, limit int) (*answer, error) {
	return newAnswerLimit(m, zoneConsul, shuffle, false, limit, !st.noCompress)
}

// newAnswerLimit is newAnswer keeping only limit answer records (chosen
// at random for each reply) when limit > 0 and shuffle is set, packed
// without name compression when compress is false.
func newAnswerLimit(m *dns.Msg, zone int, shuffle, ttls bool, limit int, compress bool) (*answer, error) {
	m.Id = 0
	m.Compress = compress
	pk, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack answer for %s: %w", qname(m), err)
	}
	a := &answer{packed: pk, rcode: m.Rcode, zone: zone, cuts: &cutCache{}, nAnswer: len(m.Answer), noCompress: !compress, fixedCase: !compress}
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeCNAME {
			a.fixedCase = true
		}
	}
	if limit > 0 && shuffle && len(m.Answer) > limit {
		a.nAnswer = limit
	}
	spans, _, err := walk(pk)
	if err != nil {
		return nil, fmt.Errorf("walk answer for %s: %w", qname(m), err)
	}
	if ttls {
		for _, s := range spans {
			if s.rrtype != dns.TypeOPT {
				a.ttls = append(a.ttls, s.ttl)
			}
		}
	}
	if shuffle && len(m.Answer) > 1 {
		// In place only for address records: their rdata holds no name
		// that a later record's compression pointer could point into.
		size, ok := 0, true
		n := 0
		for _, s := range spans {
			if s.section != 0 {
				continue
			}
			if n == 0 {
				size = s.end - s.start
				a.anOff = s.start
			} else if s.end-s.start != size {
				ok = false
			}
			if s.rrtype != dns.TypeA && s.rrtype != dns.TypeAAAA {
				ok = false
			}
			n++
		}
		last := 0
		for _, s := range spans {
			last = max(last, s.end)
		}
		fits := limit <= 0 || len(m.Answer) <= limit || last == a.anOff+size*n && last == len(pk)
		if ok && size <= 64 && fits {
			a.rrSize, a.anCount = size, n
			a.anEnds = last == a.anOff+size*n && last == len(pk)
			if limit > 0 && n > limit {
				a.limit = limit
			}
		} else {
			// Different sizes (SRV targets): keep a few packed orders.
			orig := append([]dns.RR(nil), m.Answer...)
			for i := 0; i < 8; i++ {
				rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
				all := m.Answer
				if limit > 0 && len(m.Answer) > limit {
					m.Answer = m.Answer[:limit]
				}
				p, err := m.Pack()
				m.Answer = all
				if err != nil {
					return nil, fmt.Errorf("pack answer for %s: %w", qname(m), err)
				}
				a.perms = append(a.perms, p)
			}
			m.Answer = orig
			if limit > 0 && len(m.Answer) > limit {
				a.limit = limit // for writeSlow
			}
		}
	}
	return a, nil
}

func qname(m *dns.Msg) string {
	if len(m.Question) == 0 {
		return "?"
	}
	return m.Question[0].Name
}

// write copies a into out as the reply to q; ok is false when it does not
// fit the client's limit (the caller then takes the truncating slow path).
func (a *answer) write(q *query, out []byte, now int64) ([]byte, bool) {
	pk := a.packed
	if len(a.perms) > 0 {
		pk = a.perms[rand.IntN(len(a.perms))]
	}
	extra := 0
	if q.edns {
		extra = 11
	}
	if q.qEnd == 0 || q.qEnd != questionEnd(pk) {
		return out, false
	}
	if a.caseBound(q, pk) {
		return out, false
	}
	size := len(pk)
	if a.limit > 0 && a.rrSize > 0 {
		size = a.anOff + a.rrSize*a.limit
	}
	if size+extra > q.limit() {
		return a.writeCut(q, out, q.limit()-extra, 0, true)
	}
	out = patch(q, pk, out)
	if a.rrSize > 0 {
		shuffleFixed(out[a.anOff:a.anOff+a.rrSize*a.anCount], a.rrSize, a.anCount)
		if a.limit > 0 {
			out = out[:a.anOff+a.rrSize*a.limit]
			binary.BigEndian.PutUint16(out[6:], uint16(a.limit))
		}
	}
	if len(a.ttls) > 0 {
		a.patchTTLs(out, now)
	}
	if q.edns {
		out = appendOPT(out)
	}
	return out, true
}

func (a *answer) patchTTLs(out []byte, now int64) {
	if a.servedTTL > 0 {
		for _, off := range a.ttls {
			binary.BigEndian.PutUint32(out[off:], a.servedTTL)
		}
		return
	}
	elapsed := uint32((now - a.stored) / 1e9)
	for _, off := range a.ttls {
		t := binary.BigEndian.Uint32(a.packed[off:])
		if t > elapsed {
			t -= elapsed
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(out[off:], t)
	}
}

// caseBound reports whether packed answer pk cannot be sent with q's
// question copied in: names of the authority section (a negative answer's
// SOA) and a CNAME's target and the target's records are compressed
// against the question, which would lend them the client's letter case;
// Consul writes them as stored (the SOA in lower case, a host-name address
// as registered). Uncompressed, no name takes the question's case, where
// Consul writes the answer records' owner in it. writeSlow packs them.
func (a *answer) caseBound(q *query, pk []byte) bool {
	return (a.fixedCase || binary.BigEndian.Uint16(pk[8:]) > 0) && hasUpper(q.raw[12:q.qEnd])
}

// hasUpper reports whether b holds an ASCII upper-case letter.
func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// questionEnd is where the single question of a packed answer ends.
func questionEnd(pk []byte) int {
	off, err := skipName(pk, 12)
	if err != nil {
		return -1
	}
	return off + 4
}

func shuffleFixed(b []byte, size, n int) {
	var tmp [64]byte
	for i := n - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		if i == j {
			continue
		}
		x, y := b[i*size:(i+1)*size], b[j*size:(j+1)*size]
		copy(tmp[:size], x)
		copy(x, y)
		copy(y, tmp[:size])
	}
}

// writeSlow builds the reply through miekg/dns: for requests parsed by the
// slow path and answers that must be truncated. count > 0 keeps at most
// that many answer records (the agent's udp_answer_limit, with their glue)
// and sets TC when records were cut and tc is set.
func (a *answer) writeSlow(q *query, now int64, count int, tc bool) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(a.packed); err != nil {
		return nil, fmt.Errorf("unpack stored answer: %w", err)
	}
	if a.rrSize > 0 || len(a.perms) > 0 {
		rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
		if a.limit > 0 && len(m.Answer) > a.limit {
			m.Answer = m.Answer[:a.limit]
		}
	}
	if count > 0 && len(m.Answer) > count {
		index := glueIndex(m.Extra)
		m.Answer = m.Answer[:count]
		syncExtra(m, index)
		m.Truncated = tc
	}
	if len(a.ttls) > 0 {
		elapsed := uint32((now - a.stored) / 1e9)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				h := rr.Header()
				switch {
				case a.servedTTL > 0:
					h.Ttl = a.servedTTL
				case h.Ttl > elapsed:
					h.Ttl -= elapsed
				default:
					h.Ttl = 0
				}
			}
		}
	}
	return finish(q, m, a.zone == zoneConsul, true, !a.noCompress)
}

// finish sets the reply's ID, question and EDNS for q, truncates it to the
// client's limit (as Consul does for consul answers, see trimLikeConsul;
// else dns.Msg.Truncate) and packs it. With owners set, answer records
// owned by the question's name get its letter case (answers not asked in
// the client's case: from memory, from the upstreams). compress false
// packs a Consul answer without name compression (see trimLikeConsul).
func finish(q *query, m *dns.Msg, consul, owners, compress bool) ([]byte, error) {
	req := q.request()
	m.Id = q.id
	m.Response = true
	// RA on every reply, also those the agent gave (Consul clears it when
	// it has no recursors): recursion is available here, through the
	// upstreams, as dnsmasq in front of Consul says too.
	m.RecursionAvailable = true
	m.Opcode = dns.OpcodeQuery
	m.RecursionDesired = q.rd
	m.CheckingDisabled = q.cd
	m.Question = req.Question
	// Answer records owned by the question's name carry it as the client
	// wrote it, as Consul's (and a packed answer's pointers to the
	// question) do: stored answers, built in lower case, have it in lower
	// case (RFC 4343: case is preserved where it can be). The agent was
	// asked in the client's case: its names stay as it wrote them.
	if owners && len(m.Question) == 1 {
		asked := m.Question[0].Name
		for _, rr := range m.Answer {
			if h := rr.Header(); h.Name != asked && strings.EqualFold(h.Name, asked) {
				h.Name = asked
			}
		}
	}
	// Our own OPT only.
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	if q.edns {
		m.SetEdns0(ednsSize, false)
	}
	if consul {
		trimLikeConsul(m, q.limit(), compress)
	} else {
		m.Truncate(q.limit())
		m.Compress = true
	}
	return m.Pack()
}

// rcodeReply is a reply with no records: dnsforward's own SERVFAIL,
// REFUSED or BADVERS. Its OPT record (the question had one) copies the
// question's DO bit (RFC 3225 section 3), as an upstream's SERVFAIL that
// dnsmasq relays carries it.
func rcodeReply(q *query, rcode int, soa dns.RR) ([]byte, error) {
	m := new(dns.Msg)
	m.Response = true
	m.RecursionAvailable = true
	m.Rcode = rcode
	if soa != nil {
		m.Ns = []dns.RR{soa}
	}
	b, err := finish(q, m, false, false, true)
	if err == nil && q.do {
		b = withDO(b)
	}
	return b, err
}

// cutCache holds an answer's cut forms.
type cutCache struct {
	mu   sync.Mutex
	cuts atomic.Pointer[[]cutAnswer]
}

// cutAnswer is an answer's packed orders cut to one size, with TC.
type cutAnswer struct {
	key   cutKey
	perms [][]byte
}

// maxCutSizes bounds the sizes kept per answer (clients use a few: 512,
// 1232, 4096); other sizes take the slow path.
const maxCutSizes = 6

// patch copies pk into out as the reply to q: ID, RD, CD, question case.
func patch(q *query, pk, out []byte) []byte {
	out = append(out[:0], pk...)
	binary.BigEndian.PutUint16(out, q.id)
	if q.rd {
		out[2] |= 0x01
	} else {
		out[2] &^= 0x01
	}
	if q.cd {
		out[3] |= 0x10
	} else {
		out[3] &^= 0x10
	}
	copy(out[12:q.qEnd], q.raw[12:q.qEnd])
	return out
}

// writeCut is write for an answer larger than the client takes: at most
// size bytes (without our OPT) and, when count > 0, at most count answer
// records. The fixed-size records are shuffled and as many as may go kept,
// in place; other answers use packed orders cut once per (size, count). TC
// is set when records were cut and tc is true. ok is false when neither
// applies (forwarded answers, more than maxCutSizes cuts).
func (a *answer) writeCut(q *query, out []byte, size, count int, tc bool) ([]byte, bool) {
	if len(a.ttls) > 0 || q.qEnd == 0 || a.caseBound(q, a.packed) {
		return out, false
	}
	if a.rrSize > 0 && a.anEnds {
		total := a.anCount
		if a.limit > 0 {
			total = a.limit
		}
		k := min((size-a.anOff)/a.rrSize, total)
		if count > 0 {
			k = min(k, count)
		}
		if k < 1 {
			return out, false
		}
		if k > maxInPlaceCut {
			return a.writeCutRotated(q, out, cutKey{size, count, tc})
		}
		out = patch(q, a.packed, out)
		// The first k of a random permutation (Fisher-Yates, k steps).
		var tmp [64]byte
		rs := a.rrSize
		for i := 0; i < k; i++ {
			j := i + rand.IntN(a.anCount-i)
			if j != i {
				x, y := out[a.anOff+i*rs:a.anOff+(i+1)*rs], out[a.anOff+j*rs:a.anOff+(j+1)*rs]
				copy(tmp[:rs], x)
				copy(x, y)
				copy(y, tmp[:rs])
			}
		}
		out = out[:a.anOff+k*rs]
		binary.BigEndian.PutUint16(out[6:], uint16(k))
		if tc && k < total {
			out[2] |= 0x02
		}
		if q.edns {
			out = appendOPT(out)
		}
		return out, true
	}
	perms := a.cutFor(cutKey{size, count, tc})
	if perms == nil {
		return out, false
	}
	out = patch(q, perms[rand.IntN(len(perms))], out)
	if q.edns {
		out = appendOPT(out)
	}
	return out, true
}

// maxInPlaceCut: up to this many records a cut answer is a fresh random
// choice (partial Fisher-Yates); larger ones are one of the shuffled cut
// forms, rotated by a random number of records (two copies instead of a
// random number per record).
const maxInPlaceCut = 32

// writeCutRotated sends one of the shuffled cut forms of a fixed-size
// answer with its records rotated by a random offset.
func (a *answer) writeCutRotated(q *query, out []byte, k cutKey) ([]byte, bool) {
	perms := a.cutFor(k)
	if perms == nil {
		return out, false
	}
	v := perms[rand.IntN(len(perms))]
	recs := v[a.anOff:]
	if len(recs)%a.rrSize != 0 {
		return out, false // not only the answer records (cannot happen)
	}
	n := len(recs) / a.rrSize
	r := 0
	if n > 1 {
		r = rand.IntN(n) * a.rrSize
	}
	out = patch(q, v[:a.anOff], out)
	out = append(append(out, recs[r:]...), recs[:r]...)
	if q.edns {
		out = appendOPT(out)
	}
	return out, true
}

// cutKey names one cut form of an answer.
type cutKey struct {
	size, count int
	tc          bool
}

// cutFor returns the packed orders cut as k says, building them on first
// use (nil when there are too many cut forms already or packing fails).
func (a *answer) cutFor(k cutKey) [][]byte {
	cc := a.cuts
	if p := cc.cuts.Load(); p != nil {
		for _, c := range *p {
			if c.key == k {
				return c.perms
			}
		}
		if len(*p) >= maxCutSizes {
			return nil
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var cur []cutAnswer
	if p := cc.cuts.Load(); p != nil {
		cur = *p
		for _, c := range cur {
			if c.key == k {
				return c.perms
			}
		}
	}
	srcs := a.perms
	shuffle := false
	if len(srcs) == 0 {
		srcs = [][]byte{a.packed}
		if a.rrSize > 0 {
			// Fixed-size records: several shuffled cut forms.
			srcs = [][]byte{a.packed, a.packed, a.packed, a.packed, a.packed, a.packed, a.packed, a.packed}
			shuffle = true
		}
	}
	var perms [][]byte
	for _, src := range srcs {
		m := new(dns.Msg)
		if err := m.Unpack(src); err != nil {
			return nil
		}
		if shuffle {
			rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
		}
		if a.limit > 0 && len(m.Answer) > a.limit {
			m.Answer = m.Answer[:a.limit] // a_record_limit
		}
		total := len(m.Answer)
		if k.count > 0 && len(m.Answer) > k.count {
			m.Answer = m.Answer[:k.count]
			syncExtra(m, glueIndex(m.Extra))
		}
		trimLikeConsul(m, k.size, !a.noCompress)
		m.Truncated = k.tc && len(m.Answer) < total
		p, err := m.Pack()
		if err != nil || len(p) > k.size {
			return nil
		}
		perms = append(perms, p)
	}
	next := append(append([]cutAnswer(nil), cur...), cutAnswer{key: k, perms: perms})
	cc.cuts.Store(&next)
	return perms
}

// glueIndex maps each lower-cased owner name in extra to its first
// address record (A, AAAA or CNAME), as Consul indexes the additional
// records before cutting an answer (agent/dns.go indexRRs) but for one
// fault: Consul indexes the first record of any type, and a node's meta
// TXT record, added after another instance's address, then stands in for
// the node's A record, so a kept SRV target loses its address (RFC 2782
// urges the target's address records in the additional section).
func glueIndex(extra []dns.RR) map[string]dns.RR {
	index := make(map[string]dns.RR, len(extra))
	for _, rr := range extra {
		switch rr.Header().Rrtype {
		case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME:
		default:
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		if _, ok := index[name]; !ok {
			index[name] = rr
		}
	}
	return index
}

// syncExtra sets m's additional records to the indexed record of each SRV
// target still in the answer, following CNAMEs, and nothing else, as
// Consul does when it cuts an answer (agent/dns.go syncExtra).
func syncExtra(m *dns.Msg, index map[string]dns.RR) {
	var extra []dns.RR
	seen := map[string]bool{}
	for _, rr := range m.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		for target := strings.ToLower(srv.Target); !seen[target]; {
			seen[target] = true
			x, ok := index[target]
			if !ok {
				break
			}
			extra = append(extra, x)
			cn, ok := x.(*dns.CNAME)
			if !ok {
				break
			}
			target = strings.ToLower(cn.Target)
		}
	}
	m.Extra = extra
}

// trimLikeConsul cuts m to size bytes (packed, compressed unless compress
// is false, the agent's dns_config.disable_compression), setting TC
// when answer records were dropped, and leaves m.Compress as m is to be
// packed. An answer with SRV records and additional records is cut as
// Consul's DNS cuts one: answer records from
// the end, found by a binary search, each kept SRV record with its
// target's address record and the additional section holding only those
// (agent/dns.go trimUDPResponse, dnsBinaryTruncate, syncExtra), so SRV
// records never lose their glue; an EDNS0 OPT record is kept and counted.
// Other compressed answers are cut by dns.Msg.Truncate (additional records
// first, RFC 2181 section 9); uncompressed ones as SRV answers, measured
// uncompressed, as Consul measures them (resp.Len() with Compress false).
// A single record larger than size is cut by dns.Msg.Truncate, compressed.
func trimLikeConsul(m *dns.Msg, size int, compress bool) {
	srv := false
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeSRV {
			srv = true
			break
		}
	}
	m.Compress = compress
	if m.Len() <= size {
		return
	}
	if !srv && compress {
		m.Truncate(size)
		m.Compress = true
		return
	}
	opt := m.IsEdns0()
	if opt != nil {
		// Counted apart, put back last.
		size -= dns.Len(opt)
		extra := m.Extra[:0:0]
		for _, rr := range m.Extra {
			if rr != dns.RR(opt) {
				extra = append(extra, rr)
			}
		}
		m.Extra = extra
	}
	index := glueIndex(m.Extra)
	n := len(m.Answer)
	for len(m.Answer) > 1 && m.Len() > size {
		m.Ns = nil
		if m.Len()-size > 100 {
			m.Answer = m.Answer[:binaryCut(m, size, index)]
		} else {
			m.Answer = m.Answer[:len(m.Answer)-1]
		}
		syncExtra(m, index)
	}
	if opt != nil {
		m.Extra = append(m.Extra, opt)
		size += dns.Len(opt)
	}
	if m.Len() > size {
		m.Truncate(size) // one record larger than the client's buffer
		m.Compress = m.Compress || compress
	}
	if len(m.Answer) < n {
		m.Truncated = true
	}
}

// binaryCut is how many of m's answer records fit in size bytes with
// their glue, found as Consul's dnsBinaryTruncate finds it (a count
// within 10 bytes of size ends the search). m.Answer is left as it was.
func binaryCut(m *dns.Msg, size int, index map[string]dns.RR) int {
	all, extra := m.Answer, m.Extra
	defer func() { m.Answer, m.Extra = all, extra }()
	lo, hi := 0, len(all)+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		m.Answer = all[:mid]
		syncExtra(m, index)
		l := m.Len()
		if l <= size {
			if size-l < 10 {
				return mid
			}
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
