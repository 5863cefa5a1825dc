package consultest

import (
	"os"
	"testing"

	"github.com/hashicorp/consul/api"
)

// The helper itself: start, write, restart on the same ports (dev data is
// lost), pause and resume.
func TestAgentLifecycle(t *testing.T) {
	a := StartT(t, Options{NodeName: "lifecycle"})
	kv := a.Client().KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	p, _, err := kv.Get("k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		t.Fatal("dev agent kept data across a restart")
	}
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get("k", nil); err != nil {
		t.Fatalf("after resume: %v", err)
	}
}

func TestACLAndTLSAgent(t *testing.T) {
	a := StartT(t, Options{NodeName: "secure", ACLToken: "0b9c2a4e-8a45-4e9b-9a3e-2b8e1f6d7c01", TLS: true})
	// Without a token: denied.
	cfg := a.Config()
	cfg.Token = ""
	c, _ := api.NewClient(cfg)
	if _, err := c.KV().Put(&api.KVPair{Key: "x", Value: []byte("1")}, nil); err == nil {
		t.Fatal("write without a token accepted with default-deny ACLs")
	}
	// Over HTTPS with the CA and the management token: allowed.
	cfg = api.DefaultConfig()
	cfg.Address, cfg.Scheme, cfg.Token = a.HTTPSAddr(), "https", a.opts.ACLToken
	cfg.TLSConfig = api.TLSConfig{CAFile: a.TLS.CAFile, Address: a.TLS.ServerName}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "x", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("HTTPS write with token: %v", err)
	}
	if _, err := os.Stat(a.TLS.KeyFile); err != nil {
		t.Fatal(err)
	}
}
