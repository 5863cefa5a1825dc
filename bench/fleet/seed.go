package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/consul/api"
)

// Catalog and KV the benchmark writes, all through the server's HTTP API
// (in-process on the server: those writes are not client-agent RPCs).
const (
	bigInstances = 1000
	kvKeys       = 500
	kvPrefix     = "fleet/kv/"
	// One 1,000-instance service per program, on the same nodes: a client
	// agent keeps its streamed view of a service after its last watcher
	// leaves, so a program measured after the other on the same service
	// would start for free.
	bigCT    = "big-ct"
	bigBerth = "big-berth"
)

// bigNode is the name of the node of instance i (1-based).
func bigNode(i int) string { return fmt.Sprintf("big-%04d", i) }

// seed registers 1,000 nodes with one instance each of big-ct and big-berth,
// the small services and nodes the DNS phases ask for, and 500 KV keys,
// in transactions of at most 64 operations (Consul's limit).
func seed(ctx context.Context, c *api.Client) error {
	var batches [][]*api.TxnOp
	var cur []*api.TxnOp
	add := func(ops ...*api.TxnOp) {
		if len(cur)+len(ops) > 64 {
			batches = append(batches, cur)
			cur = nil
		}
		cur = append(cur, ops...)
	}
	for i := 1; i <= bigInstances; i++ {
		node := bigNode(i)
		addr := fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)
		add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: addr}}},
			&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{ID: bigCT, Service: bigCT, Port: 8080, Tags: []string{"v0"}}}},
			&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{ID: bigBerth, Service: bigBerth, Port: 8080, Tags: []string{"v0"}}}})
	}
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("web-node-%d", i)
		add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: fmt.Sprintf("10.2.0.%d", i)}}},
			&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{ID: "web", Service: "web", Port: 80}}})
	}
	add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "ask-node", Address: "10.8.0.0"}}},
		&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "other-node", Address: "10.7.0.0"}}},
		&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "other-node", Service: api.AgentService{ID: "other", Service: "other", Port: 80}}},
		&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "flag-node", Address: "10.5.0.0"}}},
		&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "flag-node", Service: api.AgentService{ID: "flag", Service: "flag", Port: 80, Tags: []string{"v0"}}}})
	for i := 0; i < kvKeys; i++ {
		add(&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: fmt.Sprintf("%sk%03d", kvPrefix, i), Value: []byte(fmt.Sprintf("value-%03d-%s", i, "0123456789abcdef0123456789abcdef"))}})
	}
	batches = append(batches, cur)

	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	sem := make(chan struct{}, 4)
	for _, b := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func(ops []*api.TxnOp) {
			defer wg.Done()
			defer func() { <-sem }()
			ok, resp, _, err := c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
			if err == nil && !ok {
				err = fmt.Errorf("txn rolled back: %v", resp.Errors)
			}
			if err != nil {
				errs <- fmt.Errorf("seed: %w", err)
			}
		}(b)
	}
	wg.Wait()
	close(errs)
	return <-errs
}
