// Command acquire times the two ways lockrun can take a lock and learn its
// fencing token on a dev agent: ?acquire= followed by a consistent read,
// against one /v1/txn lock operation. Each acquisition is released again.
package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

func main() {
	a, err := consultest.Start(consultest.Options{NodeName: "acquire-bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer a.Close()
	c := a.Client()
	sess, _, err := c.Session().Create(&api.SessionEntry{TTL: "60s", Behavior: api.SessionBehaviorRelease, LockDelay: time.Nanosecond}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kv, txn := c.KV(), c.Txn()
	pair := &api.KVPair{Key: "bench/acq/.lock", Session: sess, Flags: api.LockFlagValue}
	ways := map[string]func() uint64{
		"acquire + consistent get": func() uint64 {
			if ok, _, err := kv.Acquire(pair, nil); err != nil || !ok {
				panic(fmt.Sprint(ok, err))
			}
			p, _, err := kv.Get(pair.Key, &api.QueryOptions{RequireConsistent: true})
			if err != nil {
				panic(err)
			}
			return p.ModifyIndex
		},
		"txn lock": func() uint64 {
			ok, r, _, err := txn.Txn(api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVLock, Key: pair.Key, Session: sess, Flags: api.LockFlagValue}}}, nil)
			if err != nil || !ok {
				panic(fmt.Sprint(ok, err))
			}
			return r.Results[0].KV.ModifyIndex
		},
	}
	res := map[string][]time.Duration{}
	for i := 0; i < 300; i++ {
		for _, name := range []string{"acquire + consistent get", "txn lock"} {
			t := time.Now()
			ways[name]()
			res[name] = append(res[name], time.Since(t))
			if _, _, err := kv.Release(pair, nil); err != nil {
				panic(err)
			}
		}
	}
	for _, name := range []string{"acquire + consistent get", "txn lock"} {
		d := res[name]
		slices.Sort(d)
		fmt.Printf("%-26s p50 %6.2fms  p90 %6.2fms\n", name, float64(d[len(d)/2])/1e6, float64(d[len(d)*9/10])/1e6)
	}
}
