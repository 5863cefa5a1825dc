package main

import (
	"encoding/json"
	"fmt"
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
