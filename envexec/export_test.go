package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// parseSystemdEnv reads an env file by the rules of systemd's
// EnvironmentFile= parser (parse_env_file): comments start with # or ; at
// the start of a line; white space around unquoted values is dropped; a
// backslash escapes the next character outside quotes; '...' is literal;
// "..." may span lines and a backslash there escapes only " \ ` $ (and a
// newline, which it removes).
func parseSystemdEnv(s string) (map[string]string, error) {
	const (
		preKey = iota
		key
		comment
		preValue
		value
		valueEscape
		single
		double
		doubleEscape
	)
	env := map[string]string{}
	state := preKey
	var k, v strings.Builder
	keep := 0 // length of v that trailing-space trimming must not cut
	finish := func() error {
		name := strings.TrimRight(k.String(), " \t")
		val := v.String()
		trimmed := strings.TrimRight(val[keep:], " \t")
		env[name] = val[:keep] + trimmed
		if name == "" {
			return fmt.Errorf("empty name")
		}
		k.Reset()
		v.Reset()
		keep = 0
		return nil
	}
	for _, c := range s + "\n" {
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state = comment
			case c == ' ' || c == '\t' || c == '\n':
			default:
				k.WriteRune(c)
				state = key
			}
		case comment:
			if c == '\n' {
				state = preKey
			}
		case key:
			switch c {
			case '=':
				state = preValue
			case '\n':
				return nil, fmt.Errorf("line without '=' for %q", k.String())
			default:
				k.WriteRune(c)
			}
		case preValue:
			switch c {
			case ' ', '\t':
			case '\n':
				if err := finish(); err != nil {
					return nil, err
				}
				state = preKey
			case '\'':
				state = single
			case '"':
				state = double
			case '\\':
				state = valueEscape
			default:
				v.WriteRune(c)
				state = value
			}
		case value:
			switch c {
			case '\n':
				if err := finish(); err != nil {
					return nil, err
				}
				state = preKey
			case '\\':
				state = valueEscape
			default:
				v.WriteRune(c)
			}
		case valueEscape:
			if c != '\n' {
				v.WriteRune(c)
				keep = v.Len()
			}
			state = value
		case single:
			if c == '\'' {
				keep = v.Len()
				state = value
			} else {
				v.WriteRune(c)
			}
		case double:
			switch c {
			case '"':
				keep = v.Len()
				state = value
			case '\\':
				state = doubleEscape
			default:
				v.WriteRune(c)
			}
		case doubleEscape:
			switch c {
			case '"', '\\', '`', '$':
				v.WriteRune(c)
			case '\n':
			default:
				v.WriteRune('\\')
				v.WriteRune(c)
			}
			state = double
		}
	}
	if state != preKey {
		return nil, fmt.Errorf("unterminated value for %q", k.String())
	}
	return env, nil
}

// parseDockerEnvFile reads an env file as `docker run --env-file` does: one
// variable per line, leading white space dropped, # lines are comments, the
// value is the rest of the line after the first '=', literally.
func parseDockerEnvFile(s string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimLeft(line, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

func TestEncodeDotenv(t *testing.T) {
	env := map[string]string{
		"A": "plain", "B": "two\nlines", "C": `back\slash`, "D": `"lead`, "E": " edge ",
		"F": "mid \"quote' ok", "G": "", "H": "$VAR `x`", "I": "tab\there",
	}
	out, quoted, err := encodeDotenv(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseSystemdEnv(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fmtEnv(got) != fmtEnv(env) {
		t.Errorf("systemd round trip:\n%s\nwant:\n%s\nfile:\n%s", fmtEnv(got), fmtEnv(env), out)
	}
	if strings.Join(quoted, ",") != "B,C,D,E,I" {
		t.Errorf("quoted %v, want B,C,D,E,I", quoted)
	}
	docker := parseDockerEnvFile(string(out))
	for _, name := range []string{"A", "F", "G", "H"} {
		if docker[name] != env[name] {
			t.Errorf("docker reads %s=%q, want %q", name, docker[name], env[name])
		}
	}
	if _, _, err := encodeDotenv(map[string]string{"X": "a\rb"}); err == nil || !strings.Contains(err.Error(), "X") {
		t.Errorf("carriage return: %v", err)
	}
}

func TestEncodeShell(t *testing.T) {
	out := string(encodeShell(map[string]string{"A": "it's", "B": "x\ny"}))
	want := "export A='it'\\''s'\nexport B='x\ny'\n"
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

func TestExportRoundTrip(t *testing.T) {
	a, c, n := nsWith(t)
	values := map[string]string{
		"PLAIN":    "simple-value",
		"NEWLINES": "line 1\nline 2\n",
		"QUOTES":   `it's "quoted"` + " \\ `tick`",
		"LEADQ":    `"starts with a quote`,
		"DOLLAR":   "$HOME ${PATH} $(id)",
		"SPACES":   "  padded  ",
		"EQUALS":   "a=b",
		"UNICODE":  "ünïcødé ✓",
		"EMPTY":    "",
		"HASH":     "#not a comment",
	}
	for k, v := range values {
		put(t, c, n+"/"+k, v)
	}
	for _, format := range []string{"shell", "dotenv", "json"} {
		t.Run(format, func(t *testing.T) {
			p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", format)
			if p.code != 0 {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			var got map[string]string
			switch format {
			case "shell":
				got = readShell(t, p.stdout.String())
			case "dotenv":
				var err error
				if got, err = parseSystemdEnv(p.stdout.String()); err != nil {
					t.Fatalf("systemd rules: %v\n%s", err, p.stdout)
				}
				// Every line written bare must read the same under docker's
				// --env-file rules (the rest of the line, literally).
				docker := parseDockerEnvFile(p.stdout.String())
				for name, v := range values {
					if dotenvBare(v) && docker[name] != v {
						t.Errorf("docker --env-file reads %s as %q, want %q", name, docker[name], v)
					}
				}
				if !strings.Contains(p.stderr.String(), "name=NEWLINES") {
					t.Errorf("no warning that NEWLINES cannot go through docker --env-file:\n%s", p.stderr)
				}
			case "json":
				got = readJSON(t, p.stdout.String())
			}
			if fmtEnv(got) != fmtEnv(values) {
				t.Errorf("round trip through %s:\n%s\nwant:\n%s\noutput:\n%s", format, fmtEnv(got), fmtEnv(values), p.stdout)
			}
		})
	}

	// Bytes that are not UTF-8: shell carries them exactly, dotenv and json
	// refuse with the key named and print nothing.
	put(t, c, n+"/BINARY", "\xff\xfe ok")
	for _, format := range []string{"dotenv", "json"} {
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", format)
		if p.code != exitExport || p.stdout.String() != "" || !strings.Contains(p.stderr.String(), "BINARY") {
			t.Errorf("%s with non-UTF-8: exit %d, stdout %q, stderr %q", format, p.code, p.stdout, p.stderr)
		}
	}
	p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", "shell")
	if got := readShell(t, p.stdout.String()); got["BINARY"] != "\xff\xfe ok" {
		t.Errorf("shell BINARY=%q", got["BINARY"])
	}
	// A name that is not a shell identifier (passed to a command as
	// envconsul does) cannot go into shell or env files: refused, the name
	// given; JSON carries it.
	m := n + "-names"
	put(t, c, m+"/log.level", "debug")
	for _, format := range []string{"shell", "dotenv"} {
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", m, "-export", format)
		if p.code != exitExport || p.stdout.String() != "" || !strings.Contains(p.stderr.String(), `"log.level"`) {
			t.Errorf("%s with log.level: exit %d, stdout %q, stderr %q", format, p.code, p.stdout, p.stderr)
		}
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", m, "-export", "json")
	if got := readJSON(t, p.stdout.String()); p.code != 0 || got["log.level"] != "debug" {
		t.Errorf("json: exit %d %v %s", p.code, got, p.stderr)
	}
}

// readShell sources the export with `set -a; . file` in a clean sh and reads
// the environment back.
func readShell(t *testing.T, script string) map[string]string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "env.sh")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/env", "-i", "/bin/sh", "-c", `set -a; . "$1"; exec /usr/bin/env -0`, "sh", f).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "PWD" && k != "SHLVL" && k != "_" && k != "OLDPWD" {
			env[k] = v
		}
	}
	return env
}

func readJSON(t *testing.T, s string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := jsonUnmarshal([]byte(s), &m); err != nil {
		t.Fatalf("json: %v\n%s", err, s)
	}
	return m
}
