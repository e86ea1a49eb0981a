package resolver

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The answer cache. A public MX asks the same DNS lists about the same
// clients many times a minute; asking the servers every time costs each
// session a round trip and the DNS servers a query (Postfix keeps such
// answers for the life of each smtpd process). Answers are kept for as
// long as their records say and no longer: a positive answer for its
// smallest TTL, NXDOMAIN for the negative TTL of the zone's SOA
// (RFC 2308), and not at all without one; server failures and timeouts
// are never kept. The cache is bounded: when full, expired entries go
// first, then arbitrary ones.

// maxCacheTTL caps how long anything is kept, whatever the zone says.
const maxCacheTTL = time.Hour

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	answer   []dns.RR
	notFound bool
	expires  time.Time
}

type answerCache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]cacheEntry
	now     func() time.Time
}

// WithCache gives the resolver a cache of up to max answers (see above)
// and returns it. Used by smtpd, whose DNS lists ask the same names over
// and over; the smtp client asks each destination seldom and leaves
// caching to the system's resolver.
func (r *Resolver) WithCache(max int) *Resolver {
	if max > 0 {
		r.cache = &answerCache{max: max, entries: map[cacheKey]cacheEntry{}, now: time.Now}
	}
	return r
}

func (c *answerCache) get(name string, qtype uint16) (cacheEntry, bool) {
	k := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && !c.now().Before(e.expires) {
		delete(c.entries, k)
		return cacheEntry{}, false
	}
	return e, ok
}

// put keeps a response for as long as it may be kept.
func (c *answerCache) put(name string, qtype uint16, resp *dns.Msg) {
	var ttl uint32
	var e cacheEntry
	switch resp.Rcode {
	case dns.RcodeSuccess:
		if len(resp.Answer) == 0 {
			// NODATA: like NXDOMAIN, kept only under a SOA.
			t, ok := negativeTTL(resp)
			if !ok {
				return
			}
			ttl = t
			break
		}
		ttl = resp.Answer[0].Header().Ttl
		for _, rr := range resp.Answer[1:] {
			ttl = min(ttl, rr.Header().Ttl)
		}
		e.answer = resp.Answer
	case dns.RcodeNameError:
		t, ok := negativeTTL(resp)
		if !ok {
			return
		}
		ttl, e.notFound = t, true
	default:
		return
	}
	if ttl == 0 {
		return
	}
	now := c.now()
	e.expires = now.Add(min(time.Duration(ttl)*time.Second, maxCacheTTL))
	k := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = e
}

// negativeTTL is RFC 2308's: the smaller of the SOA record's TTL and its
// minimum field.
func negativeTTL(resp *dns.Msg) (uint32, bool) {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}
