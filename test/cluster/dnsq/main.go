// Command dnsq is the fault harness's DNS client, built into the cluster
// image: it asks a server for the A records of some names, -n rounds every
// -interval, and prints one line per answer:
//
//	UNIX_NANO NAME RCODE IP,IP,…     (IPs sorted; "-" for none)
//	UNIX_NANO NAME ERR message        (no answer: timeout, refused)
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "127.0.0.1:53", "DNS server `host:port`")
	n := flag.Int("n", 1, "rounds")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between rounds")
	timeout := flag.Duration("timeout", 2*time.Second, "timeout of one query")
	until := flag.String("until", "", "stop once the first name is answered NOERROR with exactly these `IPs` (sorted, comma-separated)")
	flag.Parse()
	c := &dns.Client{Net: "udp", Timeout: *timeout}
	for i, done := 0, false; i < *n && !done; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		for _, name := range flag.Args() {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			r, _, err := c.Exchange(m, *server)
			now := time.Now().UnixNano()
			if err != nil {
				fmt.Printf("%d %s ERR %s\n", now, name, strings.ReplaceAll(err.Error(), " ", "_"))
				continue
			}
			var ips []string
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					ips = append(ips, a.A.String())
				}
			}
			sort.Strings(ips)
			list := strings.Join(ips, ",")
			if list == "" {
				list = "-"
			}
			fmt.Printf("%d %s %s %s\n", now, name, dns.RcodeToString[r.Rcode], list)
			if *until != "" && name == flag.Arg(0) && r.Rcode == dns.RcodeSuccess && list == *until {
				done = true
			}
		}
		os.Stdout.Sync()
	}
}
