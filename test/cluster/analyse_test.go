package cluster

import "testing"

func TestAnalyseFindsOverlapsAndStaleWrites(t *testing.T) {
	ms := int64(1e6)
	lines := []Line{
		{"a", 0, 5}, {"a", 100 * ms, 5},
		{"b", 150 * ms, 7}, {"b", 300 * ms, 7},
		{"a", 200 * ms, 5},                     // a writes once while b holds: overlap, fenced
		{"c", 300 * ms, 9}, {"c", 400 * ms, 9}, // touches b's end: no overlap
	}
	r := Analyse(append([]Line(nil), lines...), 1)
	if len(r.Overlaps) != 1 || r.MaxOverlap() != 50*1e6 {
		t.Fatalf("overlaps %+v", r.Overlaps)
	}
	if r.Stale != 1 || r.StaleAccepted != 0 {
		t.Fatalf("stale %d accepted %d, want 1 and 0", r.Stale, r.StaleAccepted)
	}
	if r2 := Analyse(lines, 2); len(r2.Overlaps) != 0 {
		t.Fatalf("limit 2: overlaps %+v", r2.Overlaps)
	}
	// Without tokens (consul lock) every write in an overlap passes a fence.
	var noTok []Line
	for _, l := range lines {
		l.Token = 0
		noTok = append(noTok, l)
	}
	if r := Analyse(noTok, 1); r.StaleAccepted == 0 {
		t.Fatal("tokenless overlap counted as fenced")
	}
}
