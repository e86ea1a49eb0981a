package resolver

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// countingDNS answers a small zone and counts the queries per name.
type countingDNS struct {
	mu      sync.Mutex
	queries map[string]int
}

func (d *countingDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	d.queries[name]++
	d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	soa, _ := dns.NewRR("example. 300 IN SOA ns.example. host.example. 1 3600 600 86400 30")
	switch name {
	case "listed.example.":
		rr, _ := dns.NewRR("listed.example. 60 IN A 127.0.0.2")
		m.Answer = append(m.Answer, rr)
	case "zero.example.":
		rr, _ := dns.NewRR("zero.example. 0 IN A 127.0.0.2")
		m.Answer = append(m.Answer, rr)
	case "nx.example.":
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	case "servfail.example.":
		m.Rcode = dns.RcodeServerFailure
	default:
		// NXDOMAIN without a SOA: nothing says how long it holds.
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

func (d *countingDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[name+"."]
}

// TestCache: answers are kept for their TTL (NXDOMAIN for the SOA's
// negative TTL), never past it, and not at all when nothing says how
// long they hold or when the server failed; the cache stays bounded.
func TestCache(t *testing.T) {
	t.Parallel()
	d := &countingDNS{queries: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: d}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	r, err := NewResolver([]string{pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	r.WithCache(3)
	now := time.Unix(1_000_000, 0)
	r.cache.now = func() time.Time { return now }
	ctx := context.Background()
	ask := func(name string, wantNotFound bool) {
		t.Helper()
		_, err := r.Addrs(ctx, name, []string{"ipv4"})
		var de *DNSError
		switch {
		case wantNotFound && (err == nil || !asDNSError(err, &de) || !de.NotFound):
			t.Errorf("%s: %v; want NXDOMAIN", name, err)
		case !wantNotFound && name != "servfail.example" && err != nil:
			t.Errorf("%s: %v", name, err)
		}
	}
	for range 3 {
		ask("listed.example", false)
		ask("nx.example", true)
		ask("nosoa.example", true)
		ask("servfail.example", false)
		ask("zero.example", false)
	}
	for name, want := range map[string]int{"listed.example": 1, "nx.example": 1, "nosoa.example": 3, "servfail.example": 3, "zero.example": 3} {
		if got := d.count(name); got != want {
			t.Errorf("%s asked %d times; want %d", name, got, want)
		}
	}
	// The negative answer holds for the SOA's minimum (30 s), the
	// positive one for its TTL (60 s).
	now = now.Add(31 * time.Second)
	ask("listed.example", false)
	ask("nx.example", true)
	if d.count("listed.example") != 1 || d.count("nx.example") != 2 {
		t.Errorf("after 31 s: listed asked %d times (want 1), nx %d (want 2)", d.count("listed.example"), d.count("nx.example"))
	}
	now = now.Add(30 * time.Second)
	ask("listed.example", false)
	if d.count("listed.example") != 2 {
		t.Errorf("after 61 s: listed asked %d times; want 2", d.count("listed.example"))
	}
	// Bounded: three entries at most.
	for _, n := range []string{"a.example", "b.example", "c.example", "d.example"} {
		r.cache.put(n, dns.TypeA, &dns.Msg{Answer: []dns.RR{mustRR(t, n+". 60 IN A 192.0.2.1")}})
	}
	if n := len(r.cache.entries); n > 3 {
		t.Errorf("the cache holds %d entries; want at most 3", n)
	}
}

func asDNSError(err error, de **DNSError) bool {
	e, ok := err.(*DNSError)
	*de = e
	return ok
}

func mustRR(t *testing.T, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
