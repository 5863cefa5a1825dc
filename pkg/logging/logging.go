// Package logging builds the log/slog logger every berth program uses, from
// the shared -log-level and -log-format flags.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"strings"
)

// Flags holds the shared logging flags.
type Flags struct {
	Level  string
	Format string
	// Var, when not nil, is the level of the logger New builds: New sets
	// it to Level, and a program may change it later.
	Var *slog.LevelVar
}

// Register adds -log-level and -log-format to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn, error (trace is debug)")
	fs.StringVar(&f.Format, "log-format", "text", "log format: text or json")
}

// ParseLevel accepts slog's level names plus consul-template's trace and err.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "err", "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
}

// New returns a logger writing to w as the flags ask.
func (f *Flags) New(w io.Writer, program string) (*slog.Logger, error) {
	lvl, err := ParseLevel(f.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if f.Var != nil {
		f.Var.Set(lvl)
		opts.Level = f.Var
	}
	var h slog.Handler
	switch strings.ToLower(f.Format) {
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", f.Format)
	}
	return slog.New(h).With("program", program), nil
}

// Discard is a logger that drops everything, for tests and library defaults.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// syslogFacilities are the facility names consul-template and envconsul
// accept (consul-template logging/syslog.go: LOCAL0..LOCAL7 and the standard
// ones).
var syslogFacilities = map[string]syslog.Priority{
	"KERN": syslog.LOG_KERN, "USER": syslog.LOG_USER, "MAIL": syslog.LOG_MAIL, "DAEMON": syslog.LOG_DAEMON,
	"AUTH": syslog.LOG_AUTH, "SYSLOG": syslog.LOG_SYSLOG, "LPR": syslog.LOG_LPR, "NEWS": syslog.LOG_NEWS,
	"UUCP": syslog.LOG_UUCP, "CRON": syslog.LOG_CRON, "AUTHPRIV": syslog.LOG_AUTHPRIV, "FTP": syslog.LOG_FTP,
	"LOCAL0": syslog.LOG_LOCAL0, "LOCAL1": syslog.LOG_LOCAL1, "LOCAL2": syslog.LOG_LOCAL2, "LOCAL3": syslog.LOG_LOCAL3,
	"LOCAL4": syslog.LOG_LOCAL4, "LOCAL5": syslog.LOG_LOCAL5, "LOCAL6": syslog.LOG_LOCAL6, "LOCAL7": syslog.LOG_LOCAL7,
}

// SyslogFacility returns the syslog facility called name (KERN, USER, ...,
// LOCAL0 to LOCAL7, in any case; no spaces around it); ok is false for any
// other name.
func SyslogFacility(name string) (f syslog.Priority, ok bool) {
	f, ok = syslogFacilities[strings.ToUpper(name)]
	return f, ok
}
