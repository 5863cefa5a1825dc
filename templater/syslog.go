package main

import (
	"fmt"
	"io"
	"log/syslog"
	"strings"

	"github.com/berth/berth/pkg/logging"
)

// openSyslog connects to the local syslog socket (/dev/log or the other
// paths log/syslog tries; socket, when set, instead) with the facility and
// program name; each log record becomes one message at priority NOTICE.
func openSyslog(facility, name, socket string) (io.Writer, error) {
	f, ok := logging.SyslogFacility(strings.TrimSpace(facility))
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
