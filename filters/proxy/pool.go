package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/filters/policy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// Pool is a set of servers with the policy that spreads requests over them
// and the rules for an exchange with a server: time limits, failure codes,
// and the pipeline's retry and circuit breaker policies the spec names. It
// is built from a PoolSpec and immutable; requests share it concurrently.
// Only its counters change, atomically, and the policies' state, which the
// policies keep (and hand over across a reload that does not change them).
type Pool struct {
	servers      []*Server
	lb           LoadBalancer
	feedback     FeedbackBalancer // lb, when it takes feedback
	responder    responder        // lb, when it adds to responses
	timeout      time.Duration
	perTry       time.Duration
	failureCodes codeSet
	maxBody      int64          // request body buffered for replay; -1: never
	clock        pipeline.Clock // nil: the real clock
	breaker      *policy.Breaker
	retry        *policy.Retry
	breakerName  string
	retryName    string
	stats        *poolStats // shared with the previous generation after inherit

	field        string          // the pool's field path in the spec: pools[1], mainPool
	filter       *matcher        // nil: the main pool
	upstreamHost string          // setUpstreamHost; "" means not set
	check        *healthCheck    // nil: no active health checks
	outlier      *outlier        // nil: no outlier detection
	log          *slog.Logger    // never nil
	h2c          bool            // protocol h2c
	cache        *memCache       // nil: no memoryCache
	tracing      *attemptTracing // nil without a TracerProvider (tracing.go)
	dyn          *discoveryPool  // registry-fed pools (discovery.go); nil: static servers
}

// poolStats are a pool's own counters, behind a pointer for the same
// reason as serverStats.
type poolStats struct {
	retries        atomic.Uint64
	shortCircuited atomic.Uint64
	_              [48]byte
}

// newPool builds the pool of spec, whose field path is field, finding its
// policies in env.Policies. Errors name the field.
func newPool(env pipeline.Env, field string, spec *PoolSpec) (*Pool, error) {
	if spec.ServiceRegistry != "" {
		return newDiscoveryPool(env, field, spec)
	}
	p := &Pool{
		timeout:      spec.Timeout,
		perTry:       spec.PerTryTimeout,
		maxBody:      spec.ServerMaxBodySize,
		clock:        env.Clock,
		breakerName:  spec.CircuitBreakerPolicy,
		retryName:    spec.RetryPolicy,
		stats:        new(poolStats),
		field:        field,
		upstreamHost: spec.SetUpstreamHost,
		log:          env.Logger,
		h2c:          spec.Protocol == ProtocolH2C,
		tracing:      newAttemptTracing(env),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("pool", field)
	if p.maxBody == 0 {
		p.maxBody = DefaultServerMaxBodySize
	}
	if spec.Filter != nil {
		p.filter = newMatcher(spec.Filter)
	}
	for _, i := range spec.taggedServers() {
		s, err := newServer(spec.Servers[i])
		if err != nil {
			return nil, pipeline.FieldErr(field+".servers["+strconv.Itoa(i)+"]", err)
		}
		s.idx = len(p.servers)
		if env.Stats {
			s.stats.rec = pipeline.NewRecorder(env.Clock)
		}
		p.servers = append(p.servers, s)
	}
	if len(p.servers) == 0 {
		return nil, pipeline.FieldErr(field+".serverTags", fmt.Errorf("%w: no server carries all of the tags %q", ErrNoServer, spec.ServerTags))
	}
	p.lb = newLoadBalancer(&spec.LoadBalance, p.servers, env.Clock)
	p.feedback, _ = p.lb.(FeedbackBalancer)
	p.responder, _ = p.lb.(responder)
	if spec.HealthCheck != nil {
		p.check = newHealthCheck(spec.HealthCheck)
	}
	if spec.OutlierDetection != nil {
		p.outlier = newOutlier(spec.OutlierDetection)
	}
	if p.check != nil || p.outlier != nil {
		// Only then: without health, Choose stays the bare policy's.
		p.lb = newHealthAware(p.lb, &spec.LoadBalance, p.servers, env.Clock)
	}
	for _, code := range spec.FailureCodes {
		p.failureCodes.add(code)
	}
	if spec.MemoryCache != nil {
		p.cache = newMemCache(spec.MemoryCache, env.Clock)
	}
	var err error
	if spec.CircuitBreakerPolicy != "" {
		if p.breaker, err = lookupPolicy[*policy.Breaker](env.Policies, spec.CircuitBreakerPolicy, policy.KindCircuitBreaker); err != nil {
			return nil, pipeline.FieldErr(field+".circuitBreakerPolicy", err)
		}
	}
	if spec.RetryPolicy != "" {
		if p.retry, err = lookupPolicy[*policy.Retry](env.Policies, spec.RetryPolicy, policy.KindRetry); err != nil {
			return nil, pipeline.FieldErr(field+".retryPolicy", err)
		}
	}
	return p, nil
}

// lookupPolicy finds the policy called name, of kind kind. Its errors wrap
// pipeline.ErrUnknownPolicy or ErrPolicyKind.
func lookupPolicy[T any](ps pipeline.Policies, name, kind string) (T, error) {
	v, err := pipeline.Lookup[T](ps, name, kind)
	if err != nil {
		if _, k, ok := ps.Get(name); ok {
			return v, fmt.Errorf("%w: policy %q is a %s, want a %s", ErrPolicyKind, name, k, kind)
		}
	}
	return v, err
}

// Servers returns the pool's servers in the order of the spec.
func (p *Pool) Servers() []*Server {
	if p.dyn != nil {
		if cur := p.dyn.current(); cur != nil {
			return cur.Servers()
		}
		return nil
	}
	return slices.Clone(p.servers)
}

// LoadBalancer returns the pool's load balancer.
func (p *Pool) LoadBalancer() LoadBalancer { return p.lb }

// handle sends in, c's request, to a server of p through rt, retrying as
// the pool's policies allow, and puts the response into c. With a memory
// cache, a fresh entry answers instead, and a cacheable response is
// stored as the client reads it.
func (p *Pool) handle(c *pipeline.Context, in *http.Request, rt http.RoundTripper, log *slog.Logger) pipeline.Result {
	if p.dyn != nil {
		return p.dyn.handle(c, in, rt, log)
	}
	if p.cache != nil && in != nil && in.URL != nil && !upgrading(in) {
		switch p.cache.use(in) {
		case cacheLookup:
			if resp := p.cache.lookup(in); resp != nil {
				c.SetResponse(resp)
				return pipeline.Continue
			}
			fallthrough
		case cacheStore:
			res := p.exchange(c, in, rt, log)
			if res == pipeline.Continue {
				p.cache.store(in, c.Response())
			}
			return res
		}
	}
	return p.exchange(c, in, rt, log)
}

// exchange sends in to a server of p through rt, retrying as the pool's
// policies allow, and puts the response into c.
func (p *Pool) exchange(c *pipeline.Context, in *http.Request, rt http.RoundTripper, log *slog.Logger) pipeline.Result {
	if err := checkRequest(in); err != nil {
		log.Error("cannot build the outbound request", "error", err)
		c.Respond(http.StatusInternalServerError, "internal error\n")
		return ResultInternalError
	}
	upgrade := upgrading(in)
	if p.retry != nil && !upgrade {
		return p.handleRetry(c, in, rt, log)
	}
	// One attempt: the exchange stays on the stack. An Upgrade is never
	// retried: the server may have switched protocols already.
	var x exchange
	x.init(p, c, in, rt, log)
	x.upgrade = upgrade
	x.attempt(x.ctx, 1)
	return x.finish()
}

// handleRetry is handle with a retry policy: resilience.Retry.Do makes the
// attempts, within the policy's budget and the overall deadline.
func (p *Pool) handleRetry(c *pipeline.Context, in *http.Request, rt http.RoundTripper, log *slog.Logger) pipeline.Result {
	x := new(exchange)
	x.init(p, c, in, rt, log)
	p.retry.Get().Do(x.ctx, idempotent(in.Method), x.attempt)
	return x.finish()
}

// now is the pool's clock's time.
func (p *Pool) now() time.Time {
	if p.clock == nil {
		return time.Now()
	}
	return p.clock.Now()
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// checkRequest reports why in cannot be sent, if it cannot. An earlier
// filter may have left no request or a broken one.
func checkRequest(in *http.Request) error {
	switch {
	case in == nil:
		return errors.New("no request")
	case in.URL == nil:
		return errors.New("the request has no url")
	case !validMethod(in.Method):
		return errors.New("the request method is not a valid token")
	}
	return nil
}

// validMethod reports whether m is an HTTP token ("" means GET).
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !isTokenByte(m[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// inherit takes over prev's state: the load balancer's (the round-robin
// turn), the pool's counters and those of servers with the same URL, with
// their load-balancing state (attempts in flight, ewma latency). The
// policies hand their state over themselves (see filters/policy).
func (p *Pool) inherit(prev *Pool) {
	if p.dyn != nil {
		p.dyn.inherit(p, prev)
		return
	}
	if prev.dyn != nil {
		if prev = prev.dyn.current(); prev == nil {
			return
		}
	}
	p.stats = prev.stats
	if p.cache != nil && prev.cache != nil && p.cache.settings == prev.cache.settings {
		p.cache = prev.cache
	}
	prevLB := prev.lb
	if h, ok := prevLB.(*healthAware); ok {
		prevLB = h.base
	}
	if inh, ok := p.lb.(inheritor); ok {
		inh.inherit(prevLB)
	}
	// Match servers by URL; a URL listed n times matches its n-th listing.
	byURL := map[string][]*serverStats{}
	for _, s := range prev.servers {
		byURL[s.url] = append(byURL[s.url], s.stats)
	}
	for _, s := range p.servers {
		if st := byURL[s.url]; len(st) > 0 {
			s.stats = st[0]
			byURL[s.url] = st[1:]
		}
	}
}

// PoolStatus is one pool's status.
type PoolStatus struct {
	// Field is the pool's place in the spec: "pools[1]",
	// "candidatePools[0]", "mainPool".
	Field string `json:"field" yaml:"field"`
	// Main is true for the main pool, the one without a filter.
	Main    bool           `json:"main" yaml:"main"`
	Servers []ServerStatus `json:"servers" yaml:"servers"`
	// CircuitBreakerPolicy names the pool's breaker policy, and
	// CircuitBreaker is its state and sliding window; both are absent
	// without a breaker. The breaker is the policy's: pools naming the same
	// policy share it.
	CircuitBreakerPolicy string                     `json:"circuitBreakerPolicy,omitempty" yaml:"circuitBreakerPolicy,omitempty"`
	CircuitBreaker       *resilience.BreakerMetrics `json:"circuitBreaker,omitempty" yaml:"circuitBreaker,omitempty"`
	// ShortCircuited counts the requests the breaker refused.
	ShortCircuited uint64 `json:"shortCircuited,omitempty" yaml:"shortCircuited,omitempty"`
	// RetryPolicy names the pool's retry policy; absent without one.
	RetryPolicy string `json:"retryPolicy,omitempty" yaml:"retryPolicy,omitempty"`
	// Retries counts the attempts this pool made after a request's first.
	Retries uint64 `json:"retries,omitempty" yaml:"retries,omitempty"`
	// MemoryCache is the state of the pool's cache; absent without one.
	MemoryCache *CacheStatus `json:"memoryCache,omitempty" yaml:"memoryCache,omitempty"`
	// RetryBudget is the retry policy's budget window: the requests and
	// retries it counted lately (over budgetWindow), across every pool
	// that names the policy. Absent without a retry policy.
	RetryBudget *RetryBudgetStatus `json:"retryBudget,omitempty" yaml:"retryBudget,omitempty"`
	// Discovery is the registry's side of a pool with serviceRegistry:
	// the service, and whether its instances are stale. Absent otherwise.
	Discovery *DiscoveryStatus `json:"discovery,omitempty" yaml:"discovery,omitempty"`
}

// RetryBudgetStatus is the state of a retry budget's window.
type RetryBudgetStatus struct {
	Requests int64 `json:"requests" yaml:"requests"`
	Retries  int64 `json:"retries" yaml:"retries"`
}

func (p *Pool) status() PoolStatus {
	if p.dyn != nil {
		return p.dyn.status(p)
	}
	ps := PoolStatus{
		Field:          p.field,
		Main:           p.filter == nil,
		Servers:        make([]ServerStatus, len(p.servers)),
		ShortCircuited: p.stats.shortCircuited.Load(),
		Retries:        p.stats.retries.Load(),
	}
	now := p.now()
	for i, s := range p.servers {
		ps.Servers[i] = s.status(now)
	}
	if p.breaker != nil {
		m := p.breaker.Get().Metrics()
		ps.CircuitBreakerPolicy, ps.CircuitBreaker = p.breakerName, &m
	}
	if p.cache != nil {
		ps.MemoryCache = p.cache.status()
	}
	if p.retry != nil {
		reqs, rets := p.retry.Get().Budget().Counts()
		ps.RetryPolicy, ps.RetryBudget = p.retryName, &RetryBudgetStatus{Requests: reqs, Retries: rets}
	}
	return ps
}

// codeSet is a set of HTTP status codes (0..639) as a bitmap.
type codeSet [10]uint64

func (cs *codeSet) add(code int) {
	if code >= 0 && code < 64*len(cs) {
		cs[code/64] |= 1 << (code % 64)
	}
}

func (cs *codeSet) has(code int) bool {
	return code >= 0 && code < 64*len(cs) && cs[code/64]&(1<<(code%64)) != 0
}
