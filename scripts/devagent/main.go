// Command devagent starts a dev-mode Consul agent on free loopback ports for
// `make demo` (through pkg/consultest), writes its addresses as shell
// variables to -env-file once it has a leader, and stops it on SIGINT/SIGTERM
// or when the process that started it exits.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth/berth/pkg/consultest"
)

// init has the kernel send devagent SIGTERM (which stops the agent as from
// the caller) when the process that started it exits. devagent.sh starts it
// in a session of its own, out of reach of a Ctrl-C in the terminal, so that
// the caller can stop it after the programs that use it; a caller that dies
// before it can (SIGKILL, or a second signal while it stops its programs)
// must still not leave the agent running. The setting is the calling
// thread's: init runs on the main thread, which lives as long as devagent.
func init() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}

func main() {
	envFile := flag.String("env-file", "", "write CONSUL_HTTP_ADDR=… lines here when ready")
	logFile := flag.String("log", "", "the agent's log file")
	node := flag.String("node", "berth-demo", "node name")
	freePort := flag.Bool("free-port", false, "print a loopback port free for both TCP and UDP, and exit")
	flag.Parse()
	if *freePort {
		p, err := consultest.FreePort()
		if err != nil {
			fmt.Fprintf(os.Stderr, "devagent: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(p)
		return
	}
	opts := consultest.Options{NodeName: *node}
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "devagent: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		opts.Log = f
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	a, err := consultest.Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devagent: %v\n", err)
		os.Exit(1)
	}
	defer a.Close()
	env := fmt.Sprintf("CONSUL_HTTP_ADDR=%s\nCONSUL_DNS_ADDR=%s\nCONSUL_DNS_PORT=%d\nCONSUL_NODE=%s\n", a.HTTPAddr(), a.DNSAddr(), a.DNSPort, a.NodeName)
	if *envFile != "" {
		err := os.WriteFile(*envFile+".tmp", []byte(env), 0o644)
		if err == nil {
			err = os.Rename(*envFile+".tmp", *envFile)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "devagent: %v\n", err)
			return
		}
	} else {
		fmt.Print(env)
	}
	<-sigs
}
