package main

import (
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strings"

	"github.com/berth/berth/pkg/logging"
)

// openSyslog connects to the local syslog socket (/dev/log or the other
// paths log/syslog tries; socket, when set, instead) with the facility and
// program name; each log record becomes one message at priority NOTICE.
// onBy names what turned syslog on and facBy where the facility came from,
// for the error.
func openSyslog(facility, name, socket, onBy, facBy string) (io.Writer, error) {
	f, ok := logging.SyslogFacility(strings.TrimSpace(facility))
	if !ok {
		return nil, fmt.Errorf("%s %q: want LOCAL0 to LOCAL7, DAEMON, USER or another syslog facility name", facBy, facility)
	}
	var w *syslog.Writer
	var err error
	if socket != "" {
		w, err = syslog.Dial("unixgram", socket, f|syslog.LOG_NOTICE, name)
	} else {
		w, err = syslog.New(f|syslog.LOG_NOTICE, name)
	}
	if err != nil {
		return nil, fmt.Errorf("syslog (turned on by %s): %w", onBy, err)
	}
	return w, nil
}

// logLevel is the log level the flag, the configuration files and
// consul-template's variables give, in that order, else the flag's default;
// it is read at start and again on the reload signal.
func logLevel(o *options, fc *fileConfig) (string, error) {
	level, from := o.logLevelFlag, "-log-level"
	switch {
	case o.set["log-level"]:
	case fc.LogLevel != nil:
		level, from = *fc.LogLevel, "config log_level"
	default:
		// consul-template's variables, under the flag and the file
		// (config/config.go Finalize: CT_LOG, CONSUL_TEMPLATE_LOG,
		// CONSUL_TEMPLATE_LOG_LEVEL, the first set, trimmed).
		for _, name := range []string{"CT_LOG", "CONSUL_TEMPLATE_LOG", "CONSUL_TEMPLATE_LOG_LEVEL"} {
			if v := strings.TrimSpace(os.Getenv(name)); v != "" {
				level, from = v, name
				break
			}
		}
	}
	// consul-template's levels only (logging/logging.go Levels, any case):
	// "error" or an empty value is a bad configuration (exit 15).
	switch strings.ToUpper(level) {
	case "TRACE", "DEBUG", "INFO", "WARN", "ERR":
		return level, nil
	}
	return "", fmt.Errorf("%s %q: not a log level (want trace, debug, info, warn or err)", from, level)
}

// newLogger writes to stderr, or to the local syslog with -syslog (or
// syslog { enabled = true }), and returns where it writes. It is called at
// start and again on the reload signal, as consul-template sets its
// logging up again from the new configuration (cli.go Run: cli.setup,
// logging.Setup): level and syslog settings included.
func newLogger(o *options, fc *fileConfig, stderr io.Writer) (*slog.Logger, io.Writer, error) {
	level, err := logLevel(o, fc)
	if err != nil {
		return nil, nil, err
	}
	o.cli.Log.Level, o.cli.Log.Var = level, nil
	// A facility or name given turns syslog on unless it is switched
	// off explicitly, on the command line as in the file (consul-template
	// config/syslog.go Finalize: enabled defaults to facility or name set).
	on, facility, name := o.syslog, o.syslogFacility, o.syslogName
	onBy, facBy := "-syslog", "-syslog-facility"
	switch {
	case o.set["syslog"]:
	case o.set["syslog-facility"] || o.set["syslog-name"]:
		on, onBy = true, "-syslog-name"
		if o.set["syslog-facility"] {
			onBy = "-syslog-facility"
		}
	case fc.Syslog != nil:
		on, onBy = *fc.Syslog, "config syslog.enabled"
	case fc.SyslogFacility != "" || fc.SyslogName != "":
		on, onBy = true, "config syslog.name"
		if fc.SyslogFacility != "" {
			onBy = "config syslog.facility"
		}
	}
	if fc.SyslogFacility != "" && !o.set["syslog-facility"] {
		facility, facBy = fc.SyslogFacility, "config syslog.facility"
	}
	if fc.SyslogName != "" && !o.set["syslog-name"] {
		name = fc.SyslogName
	}
	w := stderr
	if on {
		sw, err := openSyslog(facility, name, o.syslogSocket, onBy, facBy)
		if err != nil {
			return nil, nil, err
		}
		w = sw
	}
	log, err := o.cli.Log.New(w, "templater")
	return log, w, err
}
