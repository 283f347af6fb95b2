// Package ratelimiter is the RateLimiter filter: it admits requests at a
// configured rate and answers the rest 429 Too Many Requests.
//
// # Model
//
// A RateLimiter holds named policies and an ordered list of url rules. For
// each request the rules are tried in order; the first whose methods and
// path match picks its policy. A request that no rule matches gets the
// defaultPolicyRef policy, or, without one, passes unlimited.
//
//	request → first matching url rule → its policy ─┐
//	        → no rule matches → defaultPolicyRef ───┤ (none: continue, unlimited)
//	                                                ▼
//	        policy's bucket for the request's key (one, per client IP,
//	        per header value or per url rule)
//	          permit free           → continue ("")
//	          free within timeout   → wait on the clock, then continue
//	          otherwise             → 429 + Retry-After, result "rateLimited"
//
// Each policy is a GCRA token bucket (resilience.Limiter): limitForPeriod
// permits per limitRefreshPeriod, a bucket of burst, so that in any window
// of length t a bucket admits at most rate × t + burst requests. A request
// that would get a permit within timeoutDuration takes it and waits for it
// on the filter's clock (Env.Clock); the wait ends early, and the request
// is rejected, when the request's context is done. A rejected request
// takes nothing from the bucket, and gets a Retry-After of the whole
// seconds, rounded up and at least 1, until a permit would be free.
//
// A policy with a key keeps a bucket per key in a resilience.KeyedLimiter
// bounded by maxKeys (least recently used keys are dropped). Keys longer
// than 64 bytes are replaced by a 128-bit keyed hash of the key, so that
// each bucket takes bounded memory whatever clients send.
//
// Limits are per gateway process; docs/rate-limits.md says what that means
// for several gateways.
//
// # Differences from Easegress
//
// The spec is Easegress v2's with burst, key and maxKeys added. A policy
// has one bucket, which every url rule naming it shares; Easegress keeps a
// bucket per url rule, which is key "route" here. defaultPolicyRef also
// limits the requests no rule matches, which Easegress passes unlimited.
//
// # Concurrency and reloads
//
// Handle is safe for concurrent use. It does not allocate for an admitted
// request (for a clientIP or header policy: once the key's bucket exists);
// a rejection allocates its 429 response. Inherit hands the
// buckets and counters of every policy whose spec did not change to the
// new generation (for route keys: of every url rule whose methods and url
// did not change either), so a reload does not give each client a fresh
// burst; a changed policy starts with full buckets.
package ratelimiter

import (
	"encoding/binary"
	"hash/maphash"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// RateLimited is the result of a request the filter rejected; the
// response is a 429 with a Retry-After header.
const RateLimited pipeline.Result = "rateLimited"

// Kind is the RateLimiter filter kind.
var Kind = pipeline.Define[Spec]("RateLimiter", []pipeline.Result{RateLimited}, build).
	WithDescription("admits requests at a rate per policy and key; answers the rest 429")

func build(env pipeline.Env, s *Spec) (pipeline.Filter, error) { return New(env, s) }

// rejectBody is the body of a 429.
const rejectBody = "rate limit exceeded\n"

// maxKeyLen is the longest key kept as it is; longer ones are hashed.
const maxKeyLen = 64

// RateLimiter is a built RateLimiter filter.
type RateLimiter struct {
	policies []*policy
	rules    []rule
	def      *policy // nil: requests no rule matches are not limited
	defRoute int     // the bucket of unmatched requests in a route policy
}

// policy is a built Policy: its buckets and counters.
type policy struct {
	spec   Policy
	key    keyKind
	header string // canonical header name, for keyHeader

	one      *resilience.Limiter      // keyGlobal
	keyed    *resilience.KeyedLimiter // keyClientIP, keyHeader
	routes   []*resilience.Limiter    // keyRoute: one per rule naming the policy
	routeIDs []string                 // the rules' ids, for Inherit

	seed0, seed1 maphash.Seed // for hashing long keys

	stats *counters
}

// counters are a policy's request counts, kept across reloads that do not
// change the policy.
type counters struct {
	admitted atomic.Uint64
	_        [56]byte // keep the two counters on separate cache lines
	rejected atomic.Uint64
}

// defaultRouteID is the route id of requests that match no url rule.
const defaultRouteID = "\x00default"

// New builds a RateLimiter from s, which it checks as Spec.Validate does.
// env.Clock times the limiters and the waits (the real clock if nil). Kind
// builds filters with it after decoding their YAML.
func New(env pipeline.Env, s *Spec) (*RateLimiter, error) {
	pl, err := compile(s)
	if err != nil {
		return nil, err
	}
	clk := env.Clock
	if clk == nil {
		clk = clock.Real()
	}
	l := &RateLimiter{policies: make([]*policy, len(pl.policies)), rules: pl.rules}
	for i, pp := range pl.policies {
		p := &policy{spec: pp.spec, key: pp.key, header: pp.header, stats: new(counters)}
		switch p.key {
		case keyGlobal:
			p.one, err = resilience.NewLimiter(p.spec.LimiterSpec, clk)
		case keyClientIP, keyHeader:
			p.keyed, err = resilience.NewKeyedLimiter(p.spec.LimiterSpec, clk, p.spec.MaxKeys)
			p.seed0, p.seed1 = maphash.MakeSeed(), maphash.MakeSeed()
		}
		if err != nil {
			return nil, pipeline.PrefixErr(err, "policies["+strconv.Itoa(i)+"]")
		}
		l.policies[i] = p
	}
	addRoute := func(p *policy, id string) (int, error) {
		lim, err := resilience.NewLimiter(p.spec.LimiterSpec, clk)
		if err != nil {
			return 0, err
		}
		p.routes = append(p.routes, lim)
		p.routeIDs = append(p.routeIDs, id)
		return len(p.routes) - 1, nil
	}
	for i := range l.rules {
		r := &l.rules[i]
		if p := l.policies[r.policy]; p.key == keyRoute {
			if r.route, err = addRoute(p, r.id); err != nil {
				return nil, err
			}
		}
	}
	if pl.def >= 0 {
		l.def = l.policies[pl.def]
		if l.def.key == keyRoute {
			if l.defRoute, err = addRoute(l.def, defaultRouteID); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Handle admits the request, after a wait of at most the policy's
// timeoutDuration, or answers it 429 and returns RateLimited.
func (l *RateLimiter) Handle(c *pipeline.Context) pipeline.Result {
	req := c.Request()
	if req == nil {
		return pipeline.Continue
	}
	p, route := l.def, l.defRoute
	for i := range l.rules {
		r := &l.rules[i]
		if r.match(req.Method, req.URL.Path) {
			p, route = l.policies[r.policy], r.route
			break
		}
	}
	if p == nil {
		return pipeline.Continue
	}
	var ok bool
	var retryAfter time.Duration
	ctx := req.Context()
	switch p.key {
	case keyGlobal:
		ok, retryAfter = p.one.Wait(ctx)
	case keyRoute:
		ok, retryAfter = p.routes[route].Wait(ctx)
	case keyClientIP:
		ok, retryAfter = p.keyed.Wait(ctx, p.fold(clientIP(req)))
	case keyHeader:
		var v string
		if vv := req.Header[p.header]; len(vv) > 0 {
			v = vv[0]
		}
		ok, retryAfter = p.keyed.Wait(ctx, p.fold(v))
	}
	if ok {
		p.stats.admitted.Add(1)
		return pipeline.Continue
	}
	p.stats.rejected.Add(1)
	resp := c.Respond(http.StatusTooManyRequests, rejectBody)
	resp.Header.Set("Retry-After", strconv.FormatInt(retryAfterSeconds(retryAfter), 10))
	return RateLimited
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// clientIP returns the client address a clientIP policy keys on: the real
// client IP the gate worked out from its trusted proxies, or the peer's
// address for a request that did not come through a gate.
func clientIP(r *http.Request) string {
	if ip := pipeline.ClientIP(r); ip.IsValid() {
		return ip.String()
	}
	return r.RemoteAddr
}

// fold returns key, or for a key longer than maxKeyLen a 128-bit hash of
// it under the policy's random seeds, so that a bucket's key takes bounded
// memory.
func (p *policy) fold(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], maphash.String(p.seed0, key))
	binary.LittleEndian.PutUint64(b[8:], maphash.String(p.seed1, key))
	return string(b[:])
}

// Inherit takes over the buckets and counters of prev's policies whose
// spec is the same (name, rate, key, maxKeys); for a route policy, only the
// buckets of url rules with the same methods and url. The buckets are then
// shared with prev until prev is closed, which is what a client sees as
// one limit across the reload.
func (l *RateLimiter) Inherit(prev pipeline.Filter) error {
	old, ok := prev.(*RateLimiter)
	if !ok || old == nil || old == l {
		return nil
	}
	for _, p := range l.policies {
		var op *policy
		for _, o := range old.policies {
			if o.spec == p.spec {
				op = o
				break
			}
		}
		if op == nil {
			continue
		}
		p.stats = op.stats
		switch p.key {
		case keyGlobal:
			p.one = op.one
		case keyClientIP, keyHeader:
			p.keyed, p.seed0, p.seed1 = op.keyed, op.seed0, op.seed1
		case keyRoute:
			for i, id := range p.routeIDs {
				for j, oid := range op.routeIDs {
					if oid == id {
						p.routes[i] = op.routes[j]
						break
					}
				}
			}
		}
	}
	return nil
}

// Status is what Status reports: each policy's counts, in spec order.
type Status struct {
	Policies []PolicyStatus `json:"policies" yaml:"policies"`
}

// PolicyStatus is one policy's counts since it was built, or since the
// first generation with the same spec.
type PolicyStatus struct {
	Name string `json:"name" yaml:"name"`
	// Admitted counts requests let through, Rejected requests answered 429.
	Admitted uint64 `json:"admitted" yaml:"admitted"`
	Rejected uint64 `json:"rejected" yaml:"rejected"`
	// Keys is the number of buckets a clientIP or header policy holds, at
	// most its maxKeys; 0 for other policies.
	Keys int `json:"keys,omitempty" yaml:"keys,omitempty"`
}

// Status returns each policy's admitted and rejected counts.
func (l *RateLimiter) Status() any {
	s := Status{Policies: make([]PolicyStatus, len(l.policies))}
	for i, p := range l.policies {
		ps := PolicyStatus{Name: p.spec.Name, Admitted: p.stats.admitted.Load(), Rejected: p.stats.rejected.Load()}
		if p.keyed != nil {
			ps.Keys = p.keyed.Len()
		}
		s.Policies[i] = ps
	}
	return s
}

var (
	_ pipeline.Filter    = (*RateLimiter)(nil)
	_ pipeline.Inheritor = (*RateLimiter)(nil)
	_ pipeline.Statuser  = (*RateLimiter)(nil)
)
