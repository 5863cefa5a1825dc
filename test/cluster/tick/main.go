// Command tick is the child the cluster fault tests run under a lock: it
// appends one line "LABEL UNIX_NANO TOKEN" to FILE every -every until -for
// has passed or it is killed. All containers share the host kernel's clock,
// so lines from several hosts compare; the first and last line of a label
// bound the time its holder ran.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	label := flag.String("label", "", "name of this run, unique per lock holder")
	out := flag.String("out", "", "file to append lines to")
	every := flag.Duration("every", 10*time.Millisecond, "time between lines")
	dur := flag.Duration("for", time.Hour, "stop after this long")
	flag.Parse()
	if *label == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "tick: -label and -out are required")
		os.Exit(2)
	}
	token := os.Getenv("LOCKRUN_TOKEN")
	if token == "" {
		token = "0" // consul lock gives no fencing token
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tick:", err)
		os.Exit(2)
	}
	end := time.Now().Add(*dur)
	for {
		now := time.Now()
		// One write per line: O_APPEND keeps lines whole.
		if _, err := fmt.Fprintf(f, "%s %d %s\n", *label, now.UnixNano(), token); err != nil {
			fmt.Fprintln(os.Stderr, "tick:", err)
			os.Exit(2)
		}
		if now.After(end) {
			return
		}
		time.Sleep(*every)
	}
}
