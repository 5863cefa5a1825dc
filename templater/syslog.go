package main

import (
	"fmt"
	"io"
	"log/syslog"
	"strings"
)

// syslogFacilities are the facility names consul-template accepts
// (logging/syslog.go: LOCAL0..LOCAL7 and the standard ones, any case).
var syslogFacilities = map[string]syslog.Priority{
	"KERN": syslog.LOG_KERN, "USER": syslog.LOG_USER, "MAIL": syslog.LOG_MAIL, "DAEMON": syslog.LOG_DAEMON,
	"AUTH": syslog.LOG_AUTH, "SYSLOG": syslog.LOG_SYSLOG, "LPR": syslog.LOG_LPR, "NEWS": syslog.LOG_NEWS,
	"UUCP": syslog.LOG_UUCP, "CRON": syslog.LOG_CRON, "AUTHPRIV": syslog.LOG_AUTHPRIV, "FTP": syslog.LOG_FTP,
	"LOCAL0": syslog.LOG_LOCAL0, "LOCAL1": syslog.LOG_LOCAL1, "LOCAL2": syslog.LOG_LOCAL2, "LOCAL3": syslog.LOG_LOCAL3,
	"LOCAL4": syslog.LOG_LOCAL4, "LOCAL5": syslog.LOG_LOCAL5, "LOCAL6": syslog.LOG_LOCAL6, "LOCAL7": syslog.LOG_LOCAL7,
}

// openSyslog connects to the local syslog socket (/dev/log or the other
// paths log/syslog tries; socket, when set, instead) with the facility and
// program name; each log record becomes one message at priority NOTICE.
func openSyslog(facility, name, socket string) (io.Writer, error) {
	f, ok := syslogFacilities[strings.ToUpper(strings.TrimSpace(facility))]
	if !ok {
		return nil, fmt.Errorf("-syslog-facility %q: want LOCAL0 to LOCAL7, DAEMON, USER or another syslog facility name", facility)
	}
	var w *syslog.Writer
	var err error
	if socket != "" {
		w, err = syslog.Dial("unixgram", socket, f|syslog.LOG_NOTICE, name)
	} else {
		w, err = syslog.New(f|syslog.LOG_NOTICE, name)
	}
	if err != nil {
		return nil, fmt.Errorf("-syslog: %w", err)
	}
	return w, nil
}
