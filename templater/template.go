package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/berth/berth/pkg/supervisor"
)

// execState is what one execution of a template records.
type execState struct {
	ctx     context.Context
	store   *store
	used    map[string]bool
	got     map[string]gotValue // each dependency's value, read once per execution
	missing []string
	seen    map[string]bool
	scratch Scratch
	env     []string // NAME=VALUE read by env, envOrDefault and mustEnv before the process's own
}

// lookupEnv finds name in the execution's env (consul-template gives its
// templates the child environment first: manager/runner.go passes
// childEnv() to Execute, template/funcs.go envFunc reads it before
// os.Getenv), then in the process's environment.
func (s *execState) lookupEnv(name string) (string, bool) {
	for _, kv := range s.env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return os.LookupEnv(name)
}

// gotValue is a dependency's value as an execution first read it.
type gotValue struct {
	v  any
	ok bool
}

// get returns d's value. An execution reads each dependency from the store
// once and reuses that value, so a template that asks twice renders one
// value even when the store is updated mid-render: consul-template's
// runner updates its brain only between renders.
func (s *execState) get(d dep) (any, bool) {
	key := d.String()
	if g, seen := s.got[key]; seen {
		return g.v, g.ok
	}
	s.used[key] = true
	v, ok := s.store.get(s.ctx, d)
	if !ok {
		s.miss(key)
	}
	s.got[key] = gotValue{v, ok}
	return v, ok
}

func (s *execState) miss(what string) {
	if !s.seen[what] {
		s.seen[what] = true
		s.missing = append(s.missing, what)
	}
}

// tmpl is one loaded template and what its last execution used.
type tmpl struct {
	cfg  *templateConfig
	name string // for logs and metrics: the source, or the destination for inline contents
	t    *template.Template
	st   *execState

	deps         map[string]bool
	missing      []string
	executed     bool  // executed at least once
	complete     bool  // rendered once with all its data
	failed       error // its last execution failed with all its data (error_fatal = false); nil once it renders
	installed    bool  // its destination was written (or found current) once
	missingSince time.Time
	warned       bool
	quiet        supervisor.Quiescence // the wait (quiescence) of a change not rendered yet
	executions   uint64
	lastSize     int // output size of the last execution, to size the buffer
}

var helpers = helperFuncs()

// loadTemplate reads and parses one template, and checks the queries written
// as literals so that a bad one stops the start with its position.
func loadTemplate(c *templateConfig) (*tmpl, error) {
	text := c.Contents
	name := c.Source
	if c.Source != "" {
		b, err := os.ReadFile(c.Source)
		if err != nil {
			return nil, fmt.Errorf("template source: %w", err)
		}
		text = string(b)
	} else {
		name = "(contents for " + c.Destination + ")"
	}
	t := &tmpl{cfg: c, name: name}
	tt := template.New(name).Funcs(helpers).Funcs(dataFuncs(t))
	if len(c.FunctionDenylist) > 0 {
		tt = tt.Funcs(deniedFuncs(c.FunctionDenylist))
	}
	if c.LeftDelim != "" || c.RightDelim != "" {
		tt = tt.Delims(c.LeftDelim, c.RightDelim)
	}
	// A missing map key is the zero value unless error_on_missing_key
	// (template/template.go: missingkey=zero / missingkey=error).
	if c.ErrOnMissingKey {
		tt = tt.Option("missingkey=error")
	} else {
		tt = tt.Option("missingkey=zero")
	}
	parsed, err := tt.Parse(text)
	if err != nil {
		return nil, parseError(name, text, c.LeftDelim, err)
	}
	t.t = parsed
	for _, tr := range parsed.Templates() {
		if tr.Tree == nil || tr.Tree.Root == nil {
			continue
		}
		if err := checkLiterals(tr.Tree, tr.Tree.Root); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// deniedFuncs replaces every function whose name matches a glob of the
// template's function_denylist with one that fails when called
// (consul-template template/template.go funcMap: denied).
func deniedFuncs(globs []string) template.FuncMap {
	out := template.FuncMap{}
	names := make([]string, 0, len(helpers)+len(dataFuncNames))
	for n := range helpers {
		names = append(names, n)
	}
	for n := range dataFuncNames {
		names = append(names, n)
	}
	for _, n := range names {
		for _, g := range globs {
			if ok, _ := path.Match(g, n); ok {
				out[n] = func(...any) (string, error) { return "", errors.New("function is disabled") }
			}
		}
	}
	return out
}

var (
	errLineRe  = regexp.MustCompile(`^template: (.*?):(\d+): (.*)$`)
	errTokenRe = regexp.MustCompile(`(?:function|unexpected|bad character|undefined variable) ("[^"]*"|<[^>]*>|\S+)`)
)

// parseError rewrites text/template's "template: NAME:LINE: msg" into
// "NAME:LINE:COL: msg"; text/template gives no column, so it is found from the
// token the message names, else the line's first action.
func parseError(name, text, left string, err error) error {
	msg := err.Error()
	m := errLineRe.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", name, msg)
	}
	line, _ := strconv.Atoi(m[2])
	lines := strings.Split(text, "\n")
	col := 1
	if line >= 1 && line <= len(lines) {
		l := lines[line-1]
		if left == "" {
			left = "{{"
		}
		if i := strings.Index(l, left); i >= 0 {
			col = i + 1
		}
		if tm := errTokenRe.FindStringSubmatch(m[3]); tm != nil {
			tok := strings.Trim(tm[1], `"<>`)
			if i := strings.Index(l, tok); tok != "" && i >= 0 {
				col = i + 1
			}
		}
	}
	return fmt.Errorf("%s:%d:%d: %s", name, line, col, m[3])
}

// checkLiterals validates query strings written as literals in calls to the
// data functions.
func checkLiterals(tree *parse.Tree, n parse.Node) error {
	var walk func(parse.Node) error
	walk = func(n parse.Node) error {
		switch x := n.(type) {
		case *parse.ListNode:
			if x == nil {
				return nil
			}
			return walkEach(walk, x.Nodes)
		case *parse.ActionNode:
			return walk(x.Pipe)
		case *parse.PipeNode:
			if x == nil {
				return nil
			}
			return walkEach(walk, x.Cmds)
		case *parse.CommandNode:
			if len(x.Args) >= 2 {
				if id, ok := x.Args[0].(*parse.IdentifierNode); ok {
					var lits []string
					for _, a := range x.Args[1:] {
						if s, ok := a.(*parse.StringNode); ok {
							lits = append(lits, s.Text)
						} else {
							lits = nil
							break
						}
					}
					if lits != nil {
						if err := checkQuery(id.Ident, lits); err != nil {
							loc, _ := tree.ErrorContext(x)
							return fmt.Errorf("%s: %s: %w", loc, id.Ident, err)
						}
					}
				}
			}
			return walkEach(walk, x.Args)
		case *parse.IfNode:
			return walkBranch(walk, &x.BranchNode)
		case *parse.RangeNode:
			return walkBranch(walk, &x.BranchNode)
		case *parse.WithNode:
			return walkBranch(walk, &x.BranchNode)
		case *parse.TemplateNode:
			return walk(x.Pipe)
		}
		return nil
	}
	return walk(n)
}

// walkEach walks nodes in order, up to the first error.
func walkEach[N parse.Node](walk func(parse.Node) error, nodes []N) error {
	for _, n := range nodes {
		if err := walk(n); err != nil {
			return err
		}
	}
	return nil
}

func walkBranch(walk func(parse.Node) error, b *parse.BranchNode) error {
	if b.Pipe != nil {
		if err := walk(b.Pipe); err != nil {
			return err
		}
	}
	if b.List != nil {
		if err := walk(b.List); err != nil {
			return err
		}
	}
	if b.ElseList != nil {
		return walk(b.ElseList)
	}
	return nil
}

func checkQuery(fn string, args []string) error {
	switch fn {
	case "service", "connect":
		if args[0] == "" {
			return nil
		}
		_, _, err := parseServiceQuery(args[0], args[1:]...)
		return err
	case "key", "keyExists", "keyOrDefault", "ls", "tree", "safeLs", "safeTree":
		_, _, err := parseKVQuery(args[0])
		return err
	case "node", "nodes", "services":
		// each joins its arguments into one query, as consul-template
		return checkForm(fn, strings.Join(args, ""))
	}
	return nil
}

// execute runs the template against the store's current data. It returns the
// output, or missing != nil when some data has not arrived (or is absent).
// env comes before the process's environment for env, envOrDefault and mustEnv.
func (t *tmpl) execute(ctx context.Context, s *store, env []string) (out []byte, missing []string, err error) {
	st := &execState{ctx: ctx, store: s, used: map[string]bool{}, got: map[string]gotValue{}, seen: map[string]bool{}, env: env}
	t.st = st
	defer func() { t.st = nil }()
	var buf bytes.Buffer
	buf.Grow(t.lastSize + t.lastSize/8)
	t.executions++
	err = t.t.Execute(&buf, nil)
	t.deps = st.used
	t.missing = st.missing
	t.executed = true
	if err != nil {
		if len(st.missing) > 0 {
			// The first pass runs on empty values; an error then is expected.
			return nil, st.missing, nil
		}
		var ee template.ExecError
		if errors.As(err, &ee) {
			return nil, nil, ee
		}
		return nil, nil, err
	}
	if len(st.missing) > 0 {
		return nil, st.missing, nil
	}
	t.lastSize = buf.Len()
	return buf.Bytes(), nil, nil
}
