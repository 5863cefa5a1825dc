package consultest

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// Put writes value at key through c; an error fails t.
func Put(t testing.TB, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// Register registers reg with c's agent for the rest of the test: it is
// deregistered at the end of t. An error fails t.
func Register(t testing.TB, c *api.Client, reg *api.AgentServiceRegistration) {
	t.Helper()
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register %s: %v", reg.ID, err)
	}
	id := reg.ID
	if id == "" {
		id = reg.Name // the agent's default ID
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister(id) })
}
