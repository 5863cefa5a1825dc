// Command server is the test workload baked into a FROM scratch image by the
// registrator tests: HTTP on the given TCP ports, a UDP echo, a HEALTHCHECK
// probe (-check), and a way to make that probe fail (-sick).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const sickFile = "/sick"

func main() {
	listen := flag.String("listen", "", "comma-separated TCP addresses to serve HTTP on (e.g. :8080,:9090)")
	udp := flag.String("udp", "", "comma-separated UDP addresses to echo on")
	check := flag.Bool("check", false, "HEALTHCHECK probe: exit 1 when made sick")
	sick := flag.Bool("sick", false, "make the HEALTHCHECK probe fail from now on")
	exit := flag.Int("exit", -1, "exit with this code after -after")
	after := flag.Duration("after", 0, "delay before -exit")
	exitOnUSR1 := flag.Bool("exit-on-usr1", false, "with -exit: exit when SIGUSR1 arrives (docker kill -s USR1) instead of after -after")
	defaultSignals := flag.Bool("default-signals", false, "leave SIGTERM/SIGINT to the Go runtime: the process dies by the signal (run with --init to see exit 143 on docker stop)")
	flag.Parse()
	switch {
	case *check:
		if _, err := os.Stat(sickFile); err == nil {
			fmt.Println("sick")
			os.Exit(1)
		}
		fmt.Println("ok")
		return
	case *sick:
		if err := os.WriteFile(sickFile, []byte("sick\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	eachAddr(*listen, func(a string) error {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := os.Stat(sickFile); err == nil && r.URL.Path == "/health" {
				http.Error(w, "sick", http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "ok %s\n", a)
		}))
		return nil
	})
	eachAddr(*udp, func(a string) error {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], addr)
			}
		}()
		return nil
	})
	if *exit >= 0 {
		if *exitOnUSR1 {
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			<-usr1
		} else {
			time.Sleep(*after)
		}
		os.Exit(*exit)
	}
	if *defaultSignals {
		select {}
	}
	// Wait for docker stop's SIGTERM and exit 0 at once.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// eachAddr calls listen with each address of the comma-separated list (empty
// entries skipped); an address listen cannot bind ends the server with exit
// code 2.
func eachAddr(list string, listen func(addr string) error) {
	for _, a := range strings.Split(list, ",") {
		if a == "" {
			continue
		}
		if err := listen(a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
