package logging

import (
	"bytes"
	"encoding/json"
	"log/syslog"
	"strings"
	"testing"
)

func TestFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := (&Flags{Level: "warn", Format: "json"}).New(&buf, "prog")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line at warn level, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["msg"] != "shown" || m["program"] != "prog" || m["k"] != "v" {
		t.Fatalf("json line %q: %v", lines[0], err)
	}
}

func TestBadFlags(t *testing.T) {
	if _, err := (&Flags{Level: "loud"}).New(&bytes.Buffer{}, "p"); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Fatalf("bad level: %v", err)
	}
	if _, err := (&Flags{Format: "xml"}).New(&bytes.Buffer{}, "p"); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Fatalf("bad format: %v", err)
	}
}

// TestSyslogFacility: consul-template's names in any case; anything else
// (spaces included) is refused.
func TestSyslogFacility(t *testing.T) {
	for name, want := range map[string]syslog.Priority{"LOCAL0": syslog.LOG_LOCAL0, "local7": syslog.LOG_LOCAL7, "Daemon": syslog.LOG_DAEMON, "authpriv": syslog.LOG_AUTHPRIV} {
		if got, ok := SyslogFacility(name); !ok || got != want {
			t.Errorf("SyslogFacility(%q) = %v, %v; want %v, true", name, got, ok, want)
		}
	}
	for _, name := range []string{"", "LOCAL8", " LOCAL0", "local"} {
		if got, ok := SyslogFacility(name); ok {
			t.Errorf("SyslogFacility(%q) = %v, true; want not ok", name, got)
		}
	}
}
