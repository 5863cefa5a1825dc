package cluster

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Line is one line a tick child wrote: its run's label, the kernel clock in
// nanoseconds since the epoch, and its fencing token (0 when none).
type Line struct {
	Label string
	At    int64
	Token uint64
}

// Run is the span of one holder's child: its first and last line.
type Run struct {
	Label       string
	First, Last time.Time
	Token       uint64
	Lines       int
}

// Overlap is a stretch of time when more children ran than the lock allows.
type Overlap struct {
	From, To time.Time
	Labels   []string
}

// Len is how long the overlap lasted.
func (o Overlap) Len() time.Duration { return o.To.Sub(o.From) }

// Report is what the analyser finds in one folder of tick files.
type Report struct {
	Runs     map[string]*Run
	Overlaps []Overlap
	// Stale counts lines written with a fencing token lower than one
	// already written before them: a fenced resource rejects those.
	Stale int
	// StaleAccepted counts lines that overlap a newer holder's run and carry
	// a token not lower than it: a fenced resource would accept them (0 with
	// lockrun's tokens; every stale line when there is no token, as with
	// consul lock).
	StaleAccepted int
}

// ReadLines reads every *.log file in dir.
func ReadLines(dir string) ([]Line, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	var lines []Line
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 3 {
				continue // a line cut by SIGKILL mid-write
			}
			at, err1 := strconv.ParseInt(fields[1], 10, 64)
			tok, err2 := strconv.ParseUint(fields[2], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			lines = append(lines, Line{Label: fields[0], At: at, Token: tok})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].At < lines[j].At })
	return lines, nil
}

// Analyse finds the runs, the stretches where more than limit runs were
// going at once, and the writes a fencing token would reject.
func Analyse(lines []Line, limit int) Report {
	r := Report{Runs: map[string]*Run{}}
	var maxToken uint64
	for _, l := range lines {
		t := time.Unix(0, l.At)
		run := r.Runs[l.Label]
		if run == nil {
			run = &Run{Label: l.Label, First: t, Token: l.Token}
			r.Runs[l.Label] = run
		}
		run.Last = t
		run.Lines++
		if l.Token < maxToken {
			r.Stale++
		}
		if l.Token > maxToken {
			maxToken = l.Token
		}
	}
	type event struct {
		at    time.Time
		start bool
		label string
	}
	var evs []event
	for _, run := range r.Runs {
		evs = append(evs, event{run.First, true, run.Label}, event{run.Last, false, run.Label})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return !evs[i].start // ends first: touching spans do not overlap
		}
		return evs[i].at.Before(evs[j].at)
	})
	live := map[string]bool{}
	var cur *Overlap
	for _, e := range evs {
		if e.start {
			live[e.label] = true
		} else {
			delete(live, e.label)
		}
		switch {
		case len(live) > limit && cur == nil:
			cur = &Overlap{From: e.at}
			for l := range live {
				cur.Labels = append(cur.Labels, l)
			}
			sort.Strings(cur.Labels)
		case len(live) <= limit && cur != nil:
			cur.To = e.at
			r.Overlaps = append(r.Overlaps, *cur)
			cur = nil
		}
	}
	for _, o := range r.Overlaps {
		// The newest holder in the overlap; lines of the others written
		// during it with a token not below its token would be accepted.
		var newest *Run
		for _, l := range o.Labels {
			if run := r.Runs[l]; newest == nil || run.First.After(newest.First) {
				newest = run
			}
		}
		for _, l := range lines {
			t := time.Unix(0, l.At)
			if l.Label == newest.Label || t.Before(o.From) || t.After(o.To) {
				continue
			}
			if l.Token >= newest.Token {
				r.StaleAccepted++
			}
		}
	}
	return r
}

// MaxOverlap is the longest overlap, 0 when there is none.
func (r Report) MaxOverlap() time.Duration {
	var m time.Duration
	for _, o := range r.Overlaps {
		if o.Len() > m {
			m = o.Len()
		}
	}
	return m
}
