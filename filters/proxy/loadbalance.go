package proxy

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// LoadBalancer chooses the server of a pool for a request.
//
// A LoadBalancer is built once per pool generation over a fixed list of
// servers and shared by every request: Choose is called concurrently and
// must not block or allocate. It returns nil when no server can take the
// request; the Proxy then answers 503 without calling a server. A policy
// need not look at health: a pool with health checks or outlier detection
// wraps it and replaces a chosen server that is down or ejected (see the
// package comment). A policy that keeps state across generations (a
// counter, stickiness) implements inherit to take it over.
//
// A LoadBalancer that learns from outcomes implements FeedbackBalancer as
// well.
type LoadBalancer interface {
	Choose(r *http.Request) *Server
}

// FeedbackBalancer is a LoadBalancer that learns from the outcome of each
// attempt (leastRequest counts the attempts in flight, ewma their latency).
//
// The pool calls Done exactly once for every server Choose returned, on the
// goroutine of the request, when the attempt's response headers arrived or
// the attempt failed: d is the time since Choose returned (on the Env's
// clock), and failed is true when the attempt counts as the server's
// failure (it could not be reached, broke the connection, timed out or
// answered with a failure code). An attempt the client ended counts as not
// failed. Done runs concurrently with Choose and with itself and must not
// block for long or allocate.
type FeedbackBalancer interface {
	LoadBalancer
	Done(s *Server, d time.Duration, failed bool)
}

// Defaults of the load-balancing settings; zero values in a
// LoadBalanceSpec mean these.
const (
	// DefaultEWMADecay is the ewma policy's decay constant: a latency sample
	// weighs 1/e as much after this long.
	DefaultEWMADecay = 10 * time.Second
	// DefaultMaglevTableSize is the size of a Maglev lookup table of up to
	// 655 servers; larger pools get the first prime of at least 100 entries
	// per server.
	DefaultMaglevTableSize = 65537
	// RingVirtualNodes is the number of points each server has on a
	// consistent-hash ring.
	RingVirtualNodes = 160
	// failurePenalty is the least latency the ewma policy records for a
	// failed attempt, so that a server failing fast does not look fast.
	failurePenalty = time.Second
)

// newLoadBalancer returns the load balancer spec asks for over servers,
// which must not be empty; clk (nil: the real clock) times the ewma
// policy's decay. The spec has been validated.
func newLoadBalancer(spec *LoadBalanceSpec, servers []*Server, clk pipeline.Clock) LoadBalancer {
	if clk == nil {
		clk = clock.Real()
	}
	var lb LoadBalancer
	switch spec.Policy {
	case PolicyRandom:
		lb = &random{servers: servers}
	case PolicyWeightedRandom:
		lb = newWeightedRandom(servers)
	case PolicyIPHash:
		lb = &ipHash{table: newHashTable(spec.Hashing, servers), fallback: newRoundRobin(servers)}
	case PolicyHeaderHash:
		lb = &headerHash{
			key:      http.CanonicalHeaderKey(spec.HeaderHashKey),
			table:    newHashTable(spec.Hashing, servers),
			fallback: newRoundRobin(servers),
		}
	case PolicyCookieHash:
		lb = &cookieHash{
			name:     spec.CookieName,
			table:    newHashTable(spec.Hashing, servers),
			fallback: newRoundRobin(servers),
		}
	case PolicyLeastRequest:
		lb = &leastRequest{servers: servers}
	case PolicyEWMA:
		decay := spec.EWMADecay
		if decay <= 0 {
			decay = DefaultEWMADecay
		}
		lb = &ewma{servers: servers, clock: clk, tau: float64(decay)}
	default:
		lb = newRoundRobin(servers)
	}
	if spec.StickySession != nil && spec.StickySession.Mode != "" {
		lb = newSticky(spec.StickySession, spec.Hashing, servers, lb)
	}
	return lb
}

// roundRobin takes the servers in turn.
type roundRobin struct {
	servers []*Server
	next    *turn // shared with the previous generation after inherit
}

func newRoundRobin(servers []*Server) *roundRobin {
	return &roundRobin{servers: servers, next: new(turn)}
}

// turn is the round-robin counter, alone on its cache line.
type turn struct {
	n atomic.Uint64
	_ [56]byte
}

func (lb *roundRobin) Choose(*http.Request) *Server {
	n := uint64(len(lb.servers))
	if n == 0 {
		return nil
	}
	return lb.servers[(lb.next.n.Add(1)-1)%n]
}

// inherit continues prev's turn, so a reload does not send the next request
// to the first server again.
func (lb *roundRobin) inherit(prev LoadBalancer) {
	if p, ok := prev.(*roundRobin); ok {
		lb.next = p.next
	}
}

// random picks a server uniformly at random.
type random struct {
	servers []*Server
}

func (lb *random) Choose(*http.Request) *Server {
	if len(lb.servers) == 0 {
		return nil
	}
	return lb.servers[rand.IntN(len(lb.servers))] // #nosec G404 -- load balancing, not a secret
}

// weightedRandom picks a server at random with a probability proportional
// to its weight. Servers of weight 0 are never picked, unless every weight
// is 0: then the pick is uniform.
type weightedRandom struct {
	servers []*Server
	cum     []uint64 // cum[i]: the sum of the weights of servers[0..i]
}

func newWeightedRandom(servers []*Server) *weightedRandom {
	lb := &weightedRandom{servers: servers, cum: make([]uint64, len(servers))}
	var total uint64
	for _, s := range servers {
		total += uint64(s.weight)
	}
	var sum uint64
	for i, s := range servers {
		if total == 0 {
			sum++
		} else {
			sum += uint64(s.weight)
		}
		lb.cum[i] = sum
	}
	return lb
}

func (lb *weightedRandom) Choose(*http.Request) *Server {
	n := len(lb.cum)
	if n == 0 {
		return nil
	}
	x := rand.Uint64N(lb.cum[n-1]) // #nosec G404 -- load balancing, not a secret
	// The first i with cum[i] > x.
	lo, hi := 0, n-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if lb.cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lb.servers[lo]
}

// ipHash sends each client IP to the same server, through the pool's
// consistent-hash table.
type ipHash struct {
	table    hashTable
	fallback *roundRobin
}

func (lb *ipHash) Choose(r *http.Request) *Server {
	ip := clientIP(r)
	if ip == "" {
		return lb.fallback.Choose(r)
	}
	return lb.table.lookup(hashString(ip))
}

func (lb *ipHash) inherit(prev LoadBalancer) {
	if p, ok := prev.(*ipHash); ok {
		lb.fallback.inherit(p.fallback)
	}
}

// clientIP is the client IP that ipHash hashes: the real client IP the
// gate worked out from its trusted proxies (as its 16 bytes), or, for a
// request that did not come through a gate, the host of its RemoteAddr
// ("192.0.2.1:1234", "[2001:db8::1]:1234", or a bare address). It does not
// allocate.
func clientIP(r *http.Request) string {
	if info := pipeline.RequestInfoOf(r); info != nil && info.ClientIP.IsValid() {
		b := info.ClientIP.As16()
		return string(b[:])
	}
	a := r.RemoteAddr
	if strings.HasPrefix(a, "[") {
		if i := strings.IndexByte(a, ']'); i > 0 {
			return a[1:i]
		}
		return a
	}
	if i := strings.IndexByte(a, ':'); i >= 0 && i == strings.LastIndexByte(a, ':') {
		return a[:i]
	}
	return a
}

// headerHash sends each value of a request header to the same server;
// requests without the header are taken in turn.
type headerHash struct {
	key      string // canonical
	table    hashTable
	fallback *roundRobin
}

func (lb *headerHash) Choose(r *http.Request) *Server {
	vs := r.Header[lb.key]
	if len(vs) == 0 || vs[0] == "" {
		return lb.fallback.Choose(r)
	}
	return lb.table.lookup(hashString(vs[0]))
}

func (lb *headerHash) inherit(prev LoadBalancer) {
	if p, ok := prev.(*headerHash); ok {
		lb.fallback.inherit(p.fallback)
	}
}

// cookieHash sends each value of a request cookie to the same server;
// requests without the cookie are taken in turn.
type cookieHash struct {
	name     string
	table    hashTable
	fallback *roundRobin
}

func (lb *cookieHash) Choose(r *http.Request) *Server {
	v, ok := cookieValue(r.Header, lb.name)
	if !ok || v == "" {
		return lb.fallback.Choose(r)
	}
	return lb.table.lookup(hashString(v))
}

func (lb *cookieHash) inherit(prev LoadBalancer) {
	if p, ok := prev.(*cookieHash); ok {
		lb.fallback.inherit(p.fallback)
	}
}

// twoChoices returns two different servers' indexes picked at random from
// n > 1 (the power of two choices).
func twoChoices(n int) (int, int) {
	i := rand.IntN(n)     // #nosec G404 -- load balancing, not a secret
	j := rand.IntN(n - 1) // #nosec G404 -- load balancing, not a secret
	if j >= i {
		j++
	}
	return i, j
}

// leastRequest picks two servers at random and takes the one with fewer
// attempts in flight.
type leastRequest struct {
	servers []*Server
}

func (lb *leastRequest) Choose(*http.Request) *Server {
	var s *Server
	switch n := len(lb.servers); n {
	case 0:
		return nil
	case 1:
		s = lb.servers[0]
	default:
		i, j := twoChoices(n)
		a, b := lb.servers[i], lb.servers[j]
		s = a
		if b.stats.inflight.Load() < a.stats.inflight.Load() {
			s = b
		}
	}
	s.stats.inflight.Add(1)
	return s
}

func (lb *leastRequest) Done(s *Server, _ time.Duration, _ bool) {
	s.stats.inflight.Add(-1)
}

// ewma picks two servers at random and takes the one with the lower cost:
// its peak-EWMA latency times its attempts in flight plus one. A sample
// above the average replaces it (the peak); one below is blended in with a
// weight that grows with the time since the previous sample, decaying with
// the constant tau. The average also decays towards zero while a server
// gets no samples, so that a server that was slow once is tried again.
type ewma struct {
	servers []*Server
	clock   pipeline.Clock
	tau     float64 // decay constant in nanoseconds
}

// unsampledCost is the cost of a server without a latency sample but with
// attempts in flight: the highest, so that a fresh server is probed by one
// attempt at a time rather than flooded.
const unsampledCost = math.MaxFloat64 / 4

func (lb *ewma) cost(s *Server, now int64) float64 {
	st := s.stats
	inflight := float64(st.inflight.Load())
	avg := math.Float64frombits(st.ewma.Load())
	if avg == 0 {
		if inflight > 0 {
			return unsampledCost
		}
		return 0
	}
	if dt := now - st.ewmaAt.Load(); dt > 0 {
		avg *= math.Exp(-float64(dt) / lb.tau)
	}
	return avg * (inflight + 1)
}

func (lb *ewma) Choose(*http.Request) *Server {
	var s *Server
	switch n := len(lb.servers); n {
	case 0:
		return nil
	case 1:
		s = lb.servers[0]
	default:
		i, j := twoChoices(n)
		a, b := lb.servers[i], lb.servers[j]
		now := lb.clock.Now().UnixNano()
		s = a
		if lb.cost(b, now) < lb.cost(a, now) {
			s = b
		}
	}
	s.stats.inflight.Add(1)
	return s
}

func (lb *ewma) Done(s *Server, d time.Duration, failed bool) {
	st := s.stats
	st.inflight.Add(-1)
	if failed && d < failurePenalty {
		d = failurePenalty
	}
	rtt := float64(d)
	if rtt <= 0 {
		rtt = 1
	}
	now := lb.clock.Now().UnixNano()
	st.ewmaMu.Lock()
	avg := math.Float64frombits(st.ewma.Load())
	if avg != 0 && rtt < avg {
		if dt := now - st.ewmaAt.Load(); dt > 0 {
			w := math.Exp(-float64(dt) / lb.tau)
			avg = avg*w + rtt*(1-w)
		}
	} else {
		avg = rtt // the first sample, or a peak
	}
	st.ewma.Store(math.Float64bits(avg))
	st.ewmaAt.Store(now)
	st.ewmaMu.Unlock()
}

// inheritor is implemented by load balancers that take state over from the
// load balancer of the previous generation.
type inheritor interface {
	inherit(prev LoadBalancer)
}

var (
	_ LoadBalancer     = (*roundRobin)(nil)
	_ LoadBalancer     = (*random)(nil)
	_ LoadBalancer     = (*weightedRandom)(nil)
	_ LoadBalancer     = (*ipHash)(nil)
	_ LoadBalancer     = (*headerHash)(nil)
	_ FeedbackBalancer = (*leastRequest)(nil)
	_ FeedbackBalancer = (*ewma)(nil)
	_ inheritor        = (*roundRobin)(nil)
	_ inheritor        = (*ipHash)(nil)
	_ inheritor        = (*headerHash)(nil)
	_ LoadBalancer     = (*cookieHash)(nil)
	_ inheritor        = (*cookieHash)(nil)
)
