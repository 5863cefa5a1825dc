package main

import (
	"fmt"
	"net"
)

// sdNotify sends state ("READY=1") to the service manager's notification
// socket, the sd_notify protocol of systemd's Type=notify units: one
// datagram to the unix socket named by NOTIFY_SOCKET (a leading "@" is an
// abstract socket, which net resolves). No socket: nothing to do.
// consul-template v0.41.1 sends READY=1 once every template is rendered
// (cli.go and manager/runner.go, go-systemd's daemon.SdNotify), and
// leaves NOTIFY_SOCKET set for its commands and child, as this does.
func sdNotify(socket, state string) error {
	if socket == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", socket, err)
	}
	return nil
}
