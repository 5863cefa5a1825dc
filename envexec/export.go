package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// export prints the environment envexec would add (the Consul variables,
// plus with -env-allow the allowed variables of its own environment) and
// returns the exit code. Nothing is printed unless every value can be
// encoded.
func (r *runner) export(vars map[string]string) int {
	env := map[string]string{}
	if len(r.o.envAllow) > 0 {
		for _, kv := range os.Environ() {
			if name, val, ok := strings.Cut(kv, "="); ok && allowed(name, r.o.envAllow) {
				env[name] = val
			}
		}
	}
	for k, v := range vars {
		env[k] = v
	}
	if r.o.export != "json" {
		// Shell and env-file readers only take [A-Za-z_][A-Za-z0-9_]* names.
		for _, name := range sortedNames(env) {
			if !shellName(name) {
				return r.fail(exitExport, "-export %s: the variable name %q is not a shell identifier, which %s files cannot carry (use -sanitize, a format, or -export json)", r.o.export, name, r.o.export)
			}
		}
	}
	var out []byte
	var err error
	switch r.o.export {
	case "shell":
		out = encodeShell(env)
	case "json":
		out, err = encodeJSON(env)
	default:
		var quoted []string
		out, quoted, err = encodeDotenv(env)
		for _, name := range quoted {
			r.log.Warn("dotenv: value written in double quotes (systemd EnvironmentFile syntax); docker run --env-file cannot carry it and would read the quotes literally", "name", name)
		}
	}
	if err != nil {
		return r.fail(exitExport, "-export %s: %v", r.o.export, err)
	}
	if _, err := r.stdout.Write(out); err != nil {
		return r.fail(exitExport, "-export %s: %v", r.o.export, err)
	}
	return exitOK
}

// encodeShell writes `export NAME='value'` lines for `. file` or
// `set -a; . file`: inside single quotes every byte but the quote itself is
// literal, so any value (newlines included) comes back exactly.
func encodeShell(env map[string]string) []byte {
	var b bytes.Buffer
	for _, name := range sortedNames(env) {
		b.WriteString("export ")
		b.WriteString(name)
		b.WriteString("='")
		b.WriteString(strings.ReplaceAll(env[name], "'", `'\''`))
		b.WriteString("'\n")
	}
	return b.Bytes()
}

// encodeJSON writes one object, names sorted. JSON strings are Unicode, so a
// value that is not valid UTF-8 is refused rather than altered.
func encodeJSON(env map[string]string) ([]byte, error) {
	for _, name := range sortedNames(env) {
		if !utf8.ValidString(env[name]) {
			return nil, fmt.Errorf("the value of %s is not valid UTF-8; JSON cannot carry it exactly (use -export shell)", name)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(env); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// dotenvBare reports whether a value can be written as NAME=value and read
// back identically by both docker's --env-file reader (the rest of the line,
// literally) and systemd's EnvironmentFile reader (unquoted: leading and
// trailing white space dropped, backslash escapes, a leading quote starts a
// quoted value).
func dotenvBare(v string) bool {
	if v == "" {
		return true
	}
	if v[0] == '"' || v[0] == '\'' || v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// encodeDotenv writes NAME=value lines. Values that docker --env-file and
// systemd read alike are written bare; others (newlines, backslashes, a
// leading quote, edge spaces, control characters) are written in double
// quotes as systemd's EnvironmentFile reads them: backslash before " \ ` $,
// newlines literal. Those names are returned so the caller can warn that
// docker --env-file cannot carry them. Values that are not valid UTF-8 are
// refused: both readers reject them.
func encodeDotenv(env map[string]string) ([]byte, []string, error) {
	var b bytes.Buffer
	var quoted []string
	for _, name := range sortedNames(env) {
		v := env[name]
		if !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("the value of %s is not valid UTF-8; docker and systemd env files reject it (use -export shell)", name)
		}
		if strings.ContainsRune(v, '\r') {
			return nil, nil, fmt.Errorf("the value of %s contains a carriage return, which env file readers drop (use -export shell or json)", name)
		}
		b.WriteString(name)
		b.WriteByte('=')
		if dotenvBare(v) {
			b.WriteString(v)
		} else {
			quoted = append(quoted, name)
			b.WriteByte('"')
			for _, c := range v {
				switch c {
				case '"', '\\', '`', '$':
					b.WriteByte('\\')
				}
				b.WriteRune(c)
			}
			b.WriteByte('"')
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), quoted, nil
}
