package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// TestConformLegacyConsulString: consul = "ADDRESS", the string form older
// consul-template releases documented, is read by v0.41.1 as consul {
// address } (with a warning), in an HCL or JSON file or CT_LOCAL_CONFIG; no
// -consul-addr is given, so the file's address is the only way to the
// agent. Exit code and the file written are compared.
func TestConformLegacyConsulString(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"a.hcl":    "consul = \"@ADDR@\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
		"b.json":   `{"consul": "@ADDR@", "template": [{"source": "in.tmpl", "destination": "out"}]}`,
		"tok.hcl":  "consul = \"@ADDR@\"\n",
		"tok2.hcl": "consul {\n token = \"\"\n}\n",
	}
	cases := []struct {
		env  []string
		args []string
	}{
		{nil, []string{"-config", "a.hcl"}},
		{nil, []string{"-config", "b.json"}},
		{nil, []string{"-config", "tok.hcl", "-config", "tok2.hcl", "-template", "in.tmpl:out"}},
		{[]string{"CT_LOCAL_CONFIG=consul = \"" + agent.HTTPAddr() + "\""}, []string{"-template", "in.tmpl:out"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				res[i] = runToolEnv(t, tl.bin, dir, filepath.Join(dir, "out"), 30*time.Second, tc.env, append([]string{"-once", "-log-level", "err"}, tc.args...)...)
			}
			sameOutcome(t, strings.Join(tc.args, " "), res[0], res[1])
			if res[0].Code != 0 {
				t.Errorf("consul-template did not render (%s): the case tests nothing", res[0])
			}
		})
	}
}

// TestConformLegacyConsulWarnOnReload: the warning about consul = "ADDRESS"
// comes again after the reload signal, as consul-template v0.41.1 re-parses
// its files then (cli.go Run: loadConfigs) and its decode hook warns each
// time (config/mapstructure.go ConsulStringToStructFunc). The number of
// warnings after one reload is the peer's, counted in its output.
func TestConformLegacyConsulWarnOnReload(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"a.hcl": "consul = \"@ADDR@\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"}
	// Each tool's own wording of the warning.
	warning := []string{"consul now accepts a stanza instead of a string", `consul = \"ADDRESS\" is the old form`}
	ds, dirs := startBoth(t, files, "-config", "a.hcl")
	warnings := func(i int) int { return strings.Count(ds[i].Stdout.String(), warning[i]) }
	for i, dir := range dirs {
		eventually.True(t, 20*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
		if n := warnings(i); n != 1 {
			t.Fatalf("%s warned %d times at start, want 1:\n%s", tools(t)[i].name, n, ds[i].Stdout.String())
		}
		ds[i].Signal(t, syscall.SIGHUP)
	}
	eventually.True(t, 20*time.Second, "consul-template warns again after the reload", func() bool { return warnings(0) > 1 })
	eventually.True(t, 20*time.Second, "templater warns as often as consul-template after the reload", func() bool { return warnings(1) == warnings(0) })
}

// TestConformReloadLogLevel: the reload signal applies the log_level of the
// files read again, as consul-template v0.41.1 sets its logging up again
// from the new configuration (cli.go Run: cli.setup, logging.Setup): from
// "err" to "info", info lines follow (each tool's own, so only their
// presence is compared); a level it does not know stops it, and the exit
// codes are compared.
func TestConformReloadLogLevel(t *testing.T) {
	seedConform(t)
	conf := func(level string) string {
		return "consul {\n address = \"@ADDR@\"\n}\nlog_level = \"" + level + "\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	}
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": conf("err")}
	// Each tool's mark of an info line.
	info := []string{"[INFO]", "level=INFO"}
	ds, dirs := startBoth(t, files, "-config", "c.hcl")
	infos := func(i int) int { return strings.Count(ds[i].Stdout.String(), info[i]) }
	reload := func(level string) {
		for i, dir := range dirs {
			text := strings.ReplaceAll(conf(level), "@ADDR@", agent.HTTPAddr())
			proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), text)
			ds[i].Signal(t, syscall.SIGHUP)
		}
	}
	for i, dir := range dirs {
		eventually.True(t, 20*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
		if n := infos(i); n != 0 {
			t.Fatalf("%s wrote %d info lines under log_level err:\n%s", tools(t)[i].name, n, ds[i].Stdout.String())
		}
	}
	reload("info")
	eventually.True(t, 20*time.Second, "consul-template logs at info after the reload", func() bool { return infos(0) > 0 })
	eventually.True(t, 20*time.Second, "templater logs at info after the reload", func() bool { return infos(1) > 0 })
	reload("bogus")
	a, b := exitOrKill(ds[0]), exitOrKill(ds[1])
	if a != b || a == 137 {
		t.Fatalf("reload with log_level bogus: consul-template exit %d, templater %d\n%s", a, b, ds[1].Stdout.String())
	}
}

// TestConformCommandCommas: a command string in a configuration file is
// split on its commas into a command list, as consul-template v0.41.1
// decodes it (mapstructure's StringToSliceHookFunc(",")): "touch,x y" runs
// touch with "x y", "echo a,b > f" looks for a program "echo a", ",x" is no
// command; the -template and -exec flags keep theirs. Exit codes and the
// files each tool leaves are compared.
func TestConformCommandCommas(t *testing.T) {
	seedConform(t)
	tmpl := func(cmd string) string {
		return "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"" + cmd + "\"\n}\n"
	}
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"shell.hcl":      tmpl("echo a,b > cmdout"),
		"argv.hcl":       tmpl("touch,x y"),
		"emptyfirst.hcl": tmpl(",touch z"),
		"trailing.hcl":   tmpl("sh,-c,touch t,"),
		"texec.hcl":      "template {\n source = \"in.tmpl\"\n destination = \"out\"\n exec {\n  command = \"touch,e\"\n }\n}\n",
		"list.hcl":       "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = [\"touch\", \"a,b\"]\n}\n",
		"cmd.json":       `{"template": [{"source": "in.tmpl", "destination": "out", "command": "touch,j1,j2"}]}`,
		"exec.hcl":       "exec {\n command = \"touch,child\"\n}\n",
		"execshell.hcl":  "exec {\n command = \"sh -c 'echo a,b > x'\"\n}\n",
	}
	compareOnce(t, files, nil, [][]string{
		{"-config", "shell.hcl"},
		{"-config", "argv.hcl"},
		{"-config", "emptyfirst.hcl"},
		{"-config", "trailing.hcl"},
		{"-config", "texec.hcl"},
		{"-config", "list.hcl"},
		{"-config", "cmd.json"},
		{"-config", "exec.hcl", "-template", "in.tmpl:out"},
		{"-config", "execshell.hcl", "-template", "in.tmpl:out"},
		{"-template", "in.tmpl:out:touch f,g"},
		{"-template", "in.tmpl:out", "-exec", "touch c,d"},
	})
}

// TestConformWaitMerged: the global wait of several config files and the
// -wait flag merge field by field, as consul-template v0.41.1 merges them
// (config/wait.go Merge, then Finalize). Each tool renders once, then the
// key changes:
//   - wait { min = "1h" } in one file and wait { max = "2h" } in a later
//     one wait an hour (the later block does not undo the min): neither
//     tool writes the change while a third run without a wait has it;
//   - a template's wait { bool = false } leaves it to the global wait
//     (-wait 1h): neither writes the change either;
//   - wait { bool = false } in a file stays off under -wait 1h (the flag
//     gives min and max, not the switch): both write the change.
func TestConformWaitMerged(t *testing.T) {
	c := seedConform(t)
	files := map[string]string{"in.tmpl": `v={{ key "ct/waitmerge/k" }}`,
		"min.hcl": "wait {\n min = \"1h\"\n}\n", "max.hcl": "wait {\n max = \"2h\"\n}\n",
		"off.hcl":     "wait {\n bool = false\n}\n",
		"none.hcl":    "\n",
		"tmploff.hcl": "template {\n source = \"in.tmpl\"\n destination = \"out\"\n wait {\n  bool = false\n }\n}\n",
	}
	base := []string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err"}
	start := func(tl tool, args ...string) (*proctest.Proc, string) {
		dir := toolDir(t, tl.name, files)
		return startDaemon(t, tl.bin, dir, append(append([]string{}, base...), args...)...), filepath.Join(dir, "out")
	}
	put(t, c, "ct/waitmerge/k", "1")
	var ds []*proctest.Proc
	var held, changed []string // outputs that must keep "v=1", and that must get "v=2"
	for _, tl := range tools(t) {
		d, out := start(tl, "-config", "min.hcl", "-config", "max.hcl", "-template", "in.tmpl:out")
		ds, held = append(ds, d), append(held, out)
		d, out = start(tl, "-config", "tmploff.hcl", "-wait", "1h")
		ds, held = append(ds, d), append(held, out)
		d, out = start(tl, "-config", "off.hcl", "-wait", "1h", "-template", "in.tmpl:out")
		ds, changed = append(ds, d), append(changed, out)
	}
	control, controlOut := start(tool{"control", binary(t)}, "-config", "none.hcl", "-template", "in.tmpl:out")
	ds = append(ds, control)
	for _, o := range append(append(append([]string{}, held...), changed...), controlOut) {
		eventually.True(t, 30*time.Second, "first render of "+o, func() bool { return readFile(o) == "v=1" })
	}
	put(t, c, "ct/waitmerge/k", "2")
	for _, o := range append(append([]string{}, changed...), controlOut) {
		eventually.True(t, 30*time.Second, "v=2 in "+o, func() bool { return readFile(o) == "v=2" })
	}
	// The change is there to be had; a tool that does not wait writes it
	// within milliseconds.
	time.Sleep(3 * time.Second)
	for i, o := range held {
		if got := readFile(o); got != "v=1" {
			t.Errorf("%s (%s) wrote the change: %q", tools(t)[i/2].name, []string{"wait min 1h in one file, max 2h in another", "a template's wait { bool = false } under -wait 1h"}[i%2], got)
		}
	}
	for _, d := range ds {
		d.Stop(syscall.SIGINT, daemonStopWait)
	}
}

// TestConformExecEnvMerged: the exec { env { } } lists of several config
// files add up (custom, denylist, allowlist), as consul-template v0.41.1
// merges them (config/env.go EnvConfig.Merge appends); the -exec child
// writes the environment it got, compared with -once.
func TestConformExecEnvMerged(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"a.hcl": "exec {\n command = \"sh -c 'env | grep -E ^C[TX]_ | sort > envout'\"\n env {\n  custom = [\"CX_A=1\"]\n  denylist = [\"CT_E*\"]\n }\n}\n",
		"b.hcl": "exec {\n env {\n  custom = [\"CX_B=2\"]\n  denylist = [\"CT_S*\"]\n }\n}\n",
		"c.hcl": "exec {\n command = \"sh -c 'env | grep -E ^C[TX]_ | sort > envout'\"\n env {\n  allowlist = [\"CT_SP*\"]\n }\n}\n",
		"d.hcl": "exec {\n env {\n  allowlist = [\"CT_ENV\"]\n }\n}\n",
	}
	compareOnce(t, files, []string{"-template", "in.tmpl:out"}, [][]string{
		{"-config", "a.hcl", "-config", "b.hcl"},
		{"-config", "c.hcl", "-config", "d.hcl"},
	})
}
