// Command dnsforward-bench-helper serves the benchmark: "upstream ADDR" runs
// a hermetic upstream resolver on loopback (every name has an A record,
// 192.0.2.1, TTL 300, and no AAAA); "ports N" prints N loopback ports free
// for both TCP and UDP; "stale SERVER NAME IP URL" sends PUT URL (a Consul
// deregistration) and prints the milliseconds until IP is gone from SERVER's
// A answers for NAME (polled every millisecond, up to 20 s).
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: helper upstream ADDR | helper ports N")
		os.Exit(1)
	}
	switch os.Args[1] {
	case "ports":
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "ports:", err)
			os.Exit(1)
		}
		var keep []net.Listener
		for len(keep) < n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			u, err := net.ListenPacket("udp", l.Addr().String())
			if err != nil {
				l.Close()
				continue
			}
			u.Close()
			keep = append(keep, l)
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
		}
	case "stale":
		if len(os.Args) != 6 {
			fmt.Fprintln(os.Stderr, "usage: helper stale SERVER NAME IP URL")
			os.Exit(1)
		}
		server, name, ip, url := os.Args[2], dns.Fqdn(os.Args[3]), os.Args[4], os.Args[5]
		req, err := http.NewRequest(http.MethodPut, url, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		resp.Body.Close()
		c := &dns.Client{Timeout: time.Second}
		for time.Since(start) < 20*time.Second {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			r, _, err := c.Exchange(m, server)
			if err == nil {
				found := false
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok && a.A.String() == ip {
						found = true
					}
				}
				if !found {
					fmt.Printf("%.1f\n", float64(time.Since(start).Microseconds())/1000)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Println(">20000")
	case "upstream":
		h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.RecursionAvailable = true
			if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA {
				rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A 192.0.2.1")
				m.Answer = []dns.RR{rr}
			} else {
				rr, _ := dns.NewRR("example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 300")
				m.Ns = []dns.RR{rr}
			}
			_ = w.WriteMsg(m)
		})
		for _, n := range []string{"udp", "tcp"} {
			s := &dns.Server{Addr: os.Args[2], Net: n, Handler: h}
			go func() {
				if err := s.ListenAndServe(); err != nil {
					fmt.Fprintln(os.Stderr, "upstream:", err)
					os.Exit(1)
				}
			}()
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(1)
	}
}
