package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Loops through the agent. When the agent's `recursors` point at
// dnsforward, a question the agent does not answer itself (a PTR it does not
// know, a name outside its domain) comes back to us as the same question:
// Consul's recursor sends the request it got on, unchanged (same ID, same
// OPT record; hashicorp/consul agent/dns.go handleRecurse and
// agent/dns/recursor.go handle call dns.Client.Exchange(req, recursor)).
// Every question we pass to the agent therefore carries an EDNS0 option of
// local use (RFC 6891 §9: 65001-65534) with a random nonce, and is listed
// while in flight by nonce and by ID and question; a request that matches
// is our own question coming back and is refused at once, so the agent
// gives up on it (it treats REFUSED as a failed recursor) instead of asking
// again. Identical questions in flight share one exchange, so even a loop
// whose marks were stripped cannot multiply.

// ednsLoopOption is the EDNS0 option code of the nonce.
const ednsLoopOption = 65301

// agentKey names a question (the name as the client wrote it, type,
// transport).
type agentKey struct {
	name   string
	qtype  uint16
	tcp    bool
	subnet string // the client-subnet option passed on ("" for none)
}

// idKey is how a loop is recognised when the OPT record was dropped.
type idKey struct {
	id    uint16
	name  string // lower case
	qtype uint16
}

// agentPasses tracks the questions passed to the agent's DNS and in flight.
type agentPasses struct {
	mu      sync.Mutex
	nonces  map[uint64]struct{}
	ids     map[idKey]int
	flights flights[agentKey, *dns.Msg, struct{}]
}

func newAgentPasses() *agentPasses {
	return &agentPasses{nonces: map[uint64]struct{}{}, ids: map[idKey]int{}}
}

// isOwn reports whether request q is a question we are asking the agent
// ourselves (the agent recursed it back to us).
func (p *agentPasses) isOwn(q *query) bool {
	p.mu.Lock()
	none := len(p.ids) == 0
	p.mu.Unlock()
	if none {
		return false // nothing in flight to the agent: spare the unpacking
	}
	req := q.request()
	p.mu.Lock()
	defer p.mu.Unlock()
	if opt := req.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if l, ok := o.(*dns.EDNS0_LOCAL); ok && l.Code == ednsLoopOption && len(l.Data) == 8 {
				if _, ok := p.nonces[binary.BigEndian.Uint64(l.Data)]; ok {
					return true
				}
			}
		}
	}
	return p.ids[idKey{q.id, string(q.name), q.qtype}] > 0
}

func (p *agentPasses) add(nonce uint64, k idKey) {
	p.mu.Lock()
	p.nonces[nonce] = struct{}{}
	p.ids[k]++
	p.mu.Unlock()
}

func (p *agentPasses) remove(nonce uint64, k idKey) {
	p.mu.Lock()
	delete(p.nonces, nonce)
	if p.ids[k]--; p.ids[k] <= 0 {
		delete(p.ids, k)
	}
	p.mu.Unlock()
}

// askAgent asks the agent's DNS name/qtype and returns its reply (shared
// with identical questions in flight: treat it as read-only). Over UDP an
// answer the agent may have cut to our buffer (TC set, or within a record's
// size of it) is asked again over TCP, so the caller sees the whole answer
// and can set TC itself when it must cut. A client-subnet option (ecs,
// may be nil) goes with the question: Consul sorts a prepared query with
// Near "_ip" for its address. name is asked in the client's letter case:
// Consul copies it into some of the names it answers with (the domain of
// NS records and SRV targets, the labels of a .virtual owner), so the
// client gets them as from Consul.
func (s *Server) askAgent(ctx context.Context, name string, qtype uint16, rd, tcp bool, ecs *dns.EDNS0_SUBNET) (*dns.Msg, error) {
	key := agentKey{name: name, qtype: qtype, tcp: tcp}
	if ecs != nil {
		key.subnet = ecs.String()
	}
	return s.agent.flights.do(ctx, key, nil, nil, func(struct{}) (*dns.Msg, error) {
		resp, err := s.exchangeAgent(ctx, name, qtype, rd, tcp, ecs)
		if err == nil && !tcp && (resp.Truncated || resp.Len() > maxUDPAnswer-agentCutMargin) {
			resp, err = s.exchangeAgent(ctx, name, qtype, rd, true, ecs)
		}
		return resp, err
	})
}

// agentCutMargin: a UDP answer from the agent this close to our buffer
// size may have had records cut (Consul cuts UDP answers to the buffer
// without TC unless enable_truncate is set).
const agentCutMargin = 512

// exchangeAgent sends one marked question to the agent.
func (s *Server) exchangeAgent(ctx context.Context, name string, qtype uint16, rd, tcp bool, ecs *dns.EDNS0_SUBNET) (*dns.Msg, error) {
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	nonce := binary.BigEndian.Uint64(nb[:])
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.RecursionDesired = rd
	req.SetEdns0(maxUDPAnswer, false)
	opt := req.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: ednsLoopOption, Data: nb[:]})
	if ecs != nil {
		opt.Option = append(opt.Option, ecs)
	}
	req.Id = dns.Id()
	k := idKey{req.Id, strings.ToLower(name), qtype}
	s.agent.add(nonce, k)
	defer s.agent.remove(nonce, k)

	timeout := s.cfg.TryTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c := &dns.Client{Net: network, Timeout: timeout, UDPSize: maxUDPAnswer}
	resp, _, err := c.ExchangeContext(ctx, req, s.cfg.ConsulDNS)
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !dns.IsFqdn(resp.Question[0].Name) || !strings.EqualFold(resp.Question[0].Name, name) || resp.Question[0].Qtype != qtype {
		return nil, errors.New("answer for another question")
	}
	return resp, nil
}
