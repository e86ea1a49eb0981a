// Command fakedns is the DNS of bench/policy-bench.sh: a loopback
// server (UDP and TCP) answering for DNS block lists. A client address
// reversed under one of the list zones is listed (127.0.0.2) when it is
// one of the -listed addresses, and NXDOMAIN otherwise, as a real list
// answers for the clients it does not know (with the zone's SOA, whose
// 60 s minimum is how long a resolver may keep that answer, as real
// lists say); every other name is NXDOMAIN too, so nothing reaches the
// internet. It counts the queries it got and
// prints the count when it is stopped, to show that both servers asked.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	addr := flag.String("a", "127.0.0.77:53", "address to listen on (loopback only)")
	zones := flag.String("zones", "zen.bench.example,bl.bench.example", "block list zones, comma-separated")
	listed := flag.String("listed", "192.0.2.99", "listed client addresses, comma-separated")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "fakedns: -a must be a loopback host:port")
		os.Exit(2)
	}
	hits := map[string]bool{}
	var zoneNames []string
	for _, z := range strings.Split(*zones, ",") {
		zoneNames = append(zoneNames, dns.Fqdn(strings.ToLower(strings.TrimSpace(z))))
		for _, a := range strings.Split(*listed, ",") {
			p := strings.Split(strings.TrimSpace(a), ".")
			if len(p) != 4 {
				continue
			}
			hits[fmt.Sprintf("%s.%s.%s.%s.%s.", p[3], p[2], p[1], p[0], strings.ToLower(strings.TrimSpace(z)))] = true
		}
	}
	var queries atomic.Int64
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case hits[name] && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + " 60 IN A 127.0.0.2")
			m.Answer = append(m.Answer, rr)
		case hits[name] && q.Qtype == dns.TypeTXT:
			rr, _ := dns.NewRR(name + ` 60 IN TXT "listed by the bench"`)
			m.Answer = append(m.Answer, rr)
		case hits[name]:
		default:
			m.Rcode = dns.RcodeNameError
			for _, z := range zoneNames {
				if dns.IsSubDomain(z, name) {
					soa, _ := dns.NewRR(z + " 300 IN SOA ns." + z + " hostmaster." + z + " 1 3600 600 86400 60")
					m.Ns = append(m.Ns, soa)
				}
			}
		}
		w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	servers := []*dns.Server{{Addr: *addr, Net: "udp", Handler: h}, {Addr: *addr, Net: "tcp", Handler: h}}
	for _, s := range servers {
		go func() { errs <- s.ListenAndServe() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "fakedns:", err)
		os.Exit(1)
	case <-sig:
	}
	for _, s := range servers {
		s.Shutdown()
	}
	fmt.Printf("fakedns: %d queries\n", queries.Load())
}
