package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// agentAPI is the part of the Consul agent's HTTP API a reconcile pass
// reads and writes through; consulAgent is the real one. Errors of type
// api.StatusError mean the agent answered and refused.
type agentAPI interface {
	// Services is GET /v1/agent/services.
	Services(ctx context.Context) (map[string]*api.AgentService, error)
	// Checks is GET /v1/agent/checks.
	Checks(ctx context.Context) (map[string]*api.AgentCheck, error)
	// Register is PUT /v1/agent/service/register. It leaves the service's
	// other checks (maintenance mode, checks added by hand) in place, as
	// gliderlabs' plain register does (consul/consul.go Register).
	Register(ctx context.Context, reg *api.AgentServiceRegistration) error
	// DeregisterCheck is PUT /v1/agent/check/deregister/:id.
	DeregisterCheck(ctx context.Context, id string) error
	// Deregister is PUT /v1/agent/service/deregister/:id.
	Deregister(ctx context.Context, id string) error
	// UpdateTTL is PUT /v1/agent/check/update/:id.
	UpdateTTL(ctx context.Context, checkID, output, status string) error
}

// consulAgent is agentAPI over a Consul API client.
type consulAgent struct{ c *api.Client }

func (a consulAgent) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (a consulAgent) Services(ctx context.Context) (map[string]*api.AgentService, error) {
	return a.c.Agent().ServicesWithFilterOpts("", a.q(ctx))
}

func (a consulAgent) Checks(ctx context.Context) (map[string]*api.AgentCheck, error) {
	return a.c.Agent().ChecksWithFilterOpts("", a.q(ctx))
}

func (a consulAgent) Register(ctx context.Context, reg *api.AgentServiceRegistration) error {
	return a.c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
}

func (a consulAgent) DeregisterCheck(ctx context.Context, id string) error {
	return a.c.Agent().CheckDeregisterOpts(id, a.q(ctx))
}

func (a consulAgent) Deregister(ctx context.Context, id string) error {
	return a.c.Agent().ServiceDeregisterOpts(id, a.q(ctx))
}

func (a consulAgent) UpdateTTL(ctx context.Context, checkID, output, status string) error {
	return a.c.Agent().UpdateTTLOpts(checkID, output, status, a.q(ctx))
}

// readAgent reads the agent's services and checks into a fresh view.
func readAgent(ctx context.Context, agent agentAPI) (*agentView, error) {
	services, err := agent.Services(ctx)
	if err != nil {
		return nil, fmt.Errorf("read agent services: %w", err)
	}
	checks, err := agent.Checks(ctx)
	if err != nil {
		return nil, fmt.Errorf("read agent checks: %w", err)
	}
	return newAgentView(services, checks), nil
}

// applyPlan carries out p's operations in order through r.agent, keeping
// r.view current, and hands the plan's TTL checks to the heartbeat loop. A
// refusal by the agent (an api.StatusError) skips that one service; any
// other error stops the pass and is returned. It returns the number of
// registrations and deregistrations made.
func (r *Registrator) applyPlan(ctx context.Context, p *plan) (int, error) {
	ttl := maps.Clone(p.TTL)
	writes := 0
	for _, o := range p.Ops {
		var wrote bool
		var err error
		switch o.Kind {
		case opRegister:
			wrote, err = r.register(ctx, o.Service)
			if err == nil && !wrote {
				for cid := range o.Service.TTL {
					delete(ttl, cid)
				}
			}
		case opUpdateTTL:
			err = r.updateTTL(ctx, o)
		case opDeregister:
			wrote, err = r.deregister(ctx, o)
		}
		if err != nil {
			return writes, err
		}
		if wrote {
			writes++
		}
	}
	r.tmu.Lock()
	r.ttl = ttl
	r.tmu.Unlock()
	return writes, nil
}

// register writes one service; false (and no error) when the agent refused
// it, which is remembered so the same definition is not sent again soon.
func (r *Registrator) register(ctx context.Context, d *desiredService) (bool, error) {
	id := d.Reg.ID
	r.sendMu.Lock()
	r.setTTL(d.TTL)
	err := r.agent.Register(ctx, d.Reg)
	r.sendMu.Unlock()
	if err != nil {
		var se api.StatusError
		if !errors.As(err, &se) {
			return false, fmt.Errorf("register %s: %w", id, err)
		}
		// The agent answered and refused this definition (Consul uses 400
		// and 500 for that): skip this one service until its definition
		// changes; everything else goes on.
		r.rejected[id] = refusal{def: fingerprint(d.Reg), at: time.Now()}
		r.m.refused.Inc()
		r.log.Error("Consul refused the service; skipped until its definition changes", "container", d.Container, "id", id, "code", se.Code, "err", strings.TrimSpace(se.Body))
		return false, nil
	}
	delete(r.rejected, id)
	// Our checks the new definition no longer has go; others stay.
	for _, ch := range r.view.checks[id] {
		if ownCheck(id, ch.CheckID) && !slices.ContainsFunc(d.Reg.Checks, func(c *api.AgentServiceCheck) bool { return c.CheckID == ch.CheckID }) {
			if err := r.agent.DeregisterCheck(ctx, ch.CheckID); err != nil && !errors.As(err, new(api.StatusError)) {
				return false, fmt.Errorf("deregister check %s: %w", ch.CheckID, err)
			}
		}
	}
	r.view.registered(d.Reg)
	r.m.registrations.Inc()
	r.log.Info("registered", "id", id, "service", d.Reg.Name, "address", d.Reg.Address, "port", d.Reg.Port, "container", d.Container)
	return true, nil
}

// updateTTL sets one registrator-kept TTL check's status.
func (r *Registrator) updateTTL(ctx context.Context, o op) error {
	r.sendMu.Lock()
	r.setTTL(map[string]ttlState{o.CheckID: o.TTL})
	err := r.agent.UpdateTTL(ctx, o.CheckID, o.TTL.Output, o.TTL.Status)
	r.sendMu.Unlock()
	if err != nil {
		var se api.StatusError
		if !errors.As(err, &se) {
			return fmt.Errorf("update check %s: %w", o.CheckID, err)
		}
		r.log.Warn("check status update refused", "check", o.CheckID, "container", o.Service.Container, "err", strings.TrimSpace(se.Body))
		return nil
	}
	r.view.setStatus(o.ServiceID, o.CheckID, o.TTL.Status)
	r.m.checkUpdates.Inc()
	return nil
}

// deregister removes one owned service (a 404 means it is already gone);
// false when the agent refused.
func (r *Registrator) deregister(ctx context.Context, o op) (bool, error) {
	if err := r.agent.Deregister(ctx, o.ServiceID); err != nil {
		var se api.StatusError
		if !errors.As(err, &se) {
			return false, fmt.Errorf("deregister %s: %w", o.ServiceID, err)
		}
		if se.Code != 404 {
			r.log.Error("Consul refused to deregister the service", "id", o.ServiceID, "code", se.Code, "err", strings.TrimSpace(se.Body))
			return false, nil
		}
	}
	r.view.deregistered(o.ServiceID)
	r.m.deregistrations.Inc()
	r.log.Info("deregistered", "id", o.ServiceID, "service", o.Name)
	return true, nil
}
