package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// TestConformOneValuePerRender: a template that reads a key twice renders
// one value even when the key changes between the two reads. A plugin
// called between them changes the key in Consul and waits a second (time
// for the watch to see it). consul-template updates its data only between
// renders (manager/runner.go: Run renders from the brain the watcher
// fills between runs); templater once rendered "1 2" here, and a 3-server
// partition test saw such a file (BEGIN 21 ... END 85). Each tool runs
// alone, from the same starting value.
func TestConformOneValuePerRender(t *testing.T) {
	ct := peerBinary(t)
	a := consultest.Require(t, agent)
	curl := proctest.Tool(t, "curl", "Debian package curl")
	const key = "conform/snapshot/gen"
	put := func(v string) {
		t.Helper()
		if _, err := a.Client().KV().Put(&api.KVPair{Key: key, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	text := fmt.Sprintf(`{{ $a := key %q }}{{ $a }}{{ if eq $a "1" }} {{ plugin "/bin/sh" "./bump.sh" }}{{ end }} {{ key %q }}`, key, key)
	script := fmt.Sprintf("%s -fsS -X PUT --data 2 http://%s/v1/kv/%s >/dev/null && sleep 1 && echo bumped\n", curl, a.HTTPAddr(), key)
	var outs []outcome
	for _, tool := range []struct{ name, bin string }{{"peer", ct}, {"ours", binary(t)}} {
		put("1")
		dir := filepath.Join(t.TempDir(), tool.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{"in.tmpl": text, "bump.sh": script} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		dst := filepath.Join(dir, "out")
		outs = append(outs, runTool(t, tool.bin, dir, dst, 30*time.Second,
			"-once", "-consul-addr", a.HTTPAddr(), "-log-level", "err", "-template", filepath.Join(dir, "in.tmpl")+":"+dst))
	}
	if outs[0].Out != "1 bumped 1" {
		t.Fatalf("consul-template rendered %q, want %q (the oracle's premise changed)", outs[0].Out, "1 bumped 1")
	}
	sameOutcome(t, text, outs[0], outs[1])
}
