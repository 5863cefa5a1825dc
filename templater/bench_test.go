package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkRender2000 is the work of one change in bench (b): one template
// over 2,000 instances executed and installed.
func BenchmarkRender2000(b *testing.B) {
	dir := b.TempDir()
	c := &templateConfig{Destination: filepath.Join(dir, "out"), CreateDestDirs: true,
		Contents: "{{ key \"k\" }}\n{{ range service \"bench-svc\" }}{{ .Node }} {{ .Address }}:{{ .Port }} {{ .ID }}\n{{ end }}"}
	t, err := loadTemplate(c)
	if err != nil {
		b.Fatal(err)
	}
	s := newStore(&env{})
	var hs []*HealthService
	for i := 0; i < 2000; i++ {
		hs = append(hs, &HealthService{Node: fmt.Sprintf("bench-node-%d", i%20), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 20000 + i, ID: fmt.Sprintf("bench-svc-%d", i), Status: "passing"})
	}
	s.data[healthDep{name: "bench-svc"}.String()] = hs
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		s.data[kvGetDep{path: "k"}.String()] = kvValue{Exists: true, Value: fmt.Sprint(i)}
		out, missing, err := t.execute(ctx, s, nil)
		if err != nil || missing != nil {
			b.Fatal(err, missing)
		}
		if _, err := install(ctx, c, out, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
