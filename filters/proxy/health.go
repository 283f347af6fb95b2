package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// Defaults of the health settings; zero values mean these.
const (
	DefaultHealthInterval     = 10 * time.Second
	DefaultHealthTimeout      = 3 * time.Second
	DefaultHealthPath         = "/"
	DefaultHealthFails        = 3
	DefaultHealthPasses       = 2
	DefaultConsecutive5xx     = 5
	DefaultConsecutiveConnErr = 3
	DefaultEjectionTime       = 30 * time.Second
	DefaultMaxEjectionPercent = 50
	// healthBodyLimit is how much of a check's response body is searched
	// for expectedBody.
	healthBodyLimit = 64 << 10
)

// HealthCheckSpec is a pool's active health check: every interval, one
// request to each server.
//
//	healthCheck:
//	  interval: 5s
//	  timeout: 1s
//	  path: /healthz
//	  expectedStatus: [200]
//	  expectedBody: ok
//	  fails: 3                  # failed checks in a row to mark a server down
//	  passes: 2                 # passed checks in a row to mark it up again
type HealthCheckSpec struct {
	// Interval is the time between checks, on Env.Clock. 0 means
	// DefaultHealthInterval (10s).
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout bounds each check, on Env.Clock; a check that runs out of it
	// fails. 0 means DefaultHealthTimeout (3s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Path is the path of the check request, joined to the server URL's
	// path; it may carry a query. Empty means "/".
	Path string `yaml:"path,omitempty"`
	// Method is the check request's method. Empty means GET.
	Method string `yaml:"method,omitempty"`
	// ExpectedStatus lists the status codes that pass (each in 100..599).
	// Empty means any of 200..399.
	ExpectedStatus []int `yaml:"expectedStatus,omitempty"`
	// ExpectedBody, when set, must occur in the first 64 KiB of the
	// response body for the check to pass.
	ExpectedBody string `yaml:"expectedBody,omitempty"`
	// Fails is the number of failed checks in a row that mark a healthy
	// server down. 0 means DefaultHealthFails (3).
	Fails int `yaml:"fails,omitempty"`
	// Passes is the number of passed checks in a row that mark a down
	// server up again. 0 means DefaultHealthPasses (2).
	Passes int `yaml:"passes,omitempty"`
}

// OutlierDetectionSpec is a pool's passive outlier ejection: a server whose
// attempts fail several times in a row is ejected (left out by load
// balancing) for ejectionTime.
//
//	outlierDetection:
//	  consecutive5xx: 5
//	  consecutiveConnectErrors: 3
//	  ejectionTime: 30s
//	  maxEjectionPercent: 50
type OutlierDetectionSpec struct {
	// Consecutive5xx is the number of responses with a 5xx status in a row
	// that eject a server. 0 means DefaultConsecutive5xx (5).
	Consecutive5xx int `yaml:"consecutive5xx,omitempty"`
	// ConsecutiveConnectErrors is the number of attempts in a row that get
	// no response (the server could not be reached, broke the connection
	// or timed out) that eject a server. 0 means
	// DefaultConsecutiveConnErr (3).
	ConsecutiveConnectErrors int `yaml:"consecutiveConnectErrors,omitempty"`
	// EjectionTime is how long an ejected server is left out, on
	// Env.Clock. 0 means DefaultEjectionTime (30s).
	EjectionTime time.Duration `yaml:"ejectionTime,omitempty"`
	// MaxEjectionPercent is the largest share of the pool's servers, in
	// percent (1..100), that may be ejected at once; an ejection that
	// would exceed it does not happen. 0 means DefaultMaxEjectionPercent
	// (50).
	MaxEjectionPercent int `yaml:"maxEjectionPercent,omitempty"`
}

func (hc *HealthCheckSpec) validate(field string) error {
	switch {
	case hc.Interval < 0:
		return pipeline.FieldErr(field+".interval", fmt.Errorf("%w: must not be negative", ErrBadValue))
	case hc.Timeout < 0:
		return pipeline.FieldErr(field+".timeout", fmt.Errorf("%w: must not be negative", ErrBadValue))
	case hc.Path != "" && (!strings.HasPrefix(hc.Path, "/") || !validHeaderValue(hc.Path) || strings.ContainsAny(hc.Path, " #")):
		return pipeline.FieldErr(field+".path", fmt.Errorf("%w: %q is not a path starting with /", ErrBadValue, hc.Path))
	case hc.Method != "" && !validToken(hc.Method):
		return pipeline.FieldErr(field+".method", fmt.Errorf("%w: %q is not a method", ErrBadValue, hc.Method))
	case hc.Fails < 0:
		return pipeline.FieldErr(field+".fails", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case hc.Passes < 0:
		return pipeline.FieldErr(field+".passes", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	for i, code := range hc.ExpectedStatus {
		if code < 100 || code > 599 {
			return pipeline.FieldErr(field+".expectedStatus["+strconv.Itoa(i)+"]", fmt.Errorf("%w: status code %d is not in 100..599", ErrBadValue, code))
		}
	}
	return nil
}

func (od *OutlierDetectionSpec) validate(field string) error {
	switch {
	case od.Consecutive5xx < 0:
		return pipeline.FieldErr(field+".consecutive5xx", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case od.ConsecutiveConnectErrors < 0:
		return pipeline.FieldErr(field+".consecutiveConnectErrors", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case od.EjectionTime < 0:
		return pipeline.FieldErr(field+".ejectionTime", fmt.Errorf("%w: must not be negative", ErrBadValue))
	case od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100:
		return pipeline.FieldErr(field+".maxEjectionPercent", fmt.Errorf("%w: %d is not in 0..100", ErrBadValue, od.MaxEjectionPercent))
	}
	return nil
}

// healthCheck is a pool's compiled HealthCheckSpec.
type healthCheck struct {
	interval, timeout time.Duration
	path, method      string
	status            codeSet // the codes that pass
	body              []byte
	fails, passes     int
}

func newHealthCheck(spec *HealthCheckSpec) *healthCheck {
	hc := &healthCheck{
		interval: cmp(spec.Interval, DefaultHealthInterval),
		timeout:  cmp(spec.Timeout, DefaultHealthTimeout),
		path:     spec.Path,
		method:   spec.Method,
		fails:    cmp(spec.Fails, DefaultHealthFails),
		passes:   cmp(spec.Passes, DefaultHealthPasses),
	}
	if spec.ExpectedBody != "" {
		hc.body = []byte(spec.ExpectedBody)
	}
	if hc.path == "" {
		hc.path = DefaultHealthPath
	}
	if hc.method == "" {
		hc.method = http.MethodGet
	}
	codes := spec.ExpectedStatus
	if len(codes) == 0 {
		for c := 200; c < 400; c++ {
			codes = append(codes, c)
		}
	}
	for _, c := range codes {
		hc.status.add(c)
	}
	return hc
}

// cmp returns v, or def when v is zero.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// outlier is a pool's compiled OutlierDetectionSpec with the lock that
// serialises its ejections (so that maxEjectionPercent holds).
type outlier struct {
	consec5xx, consecConn int32
	ejection              time.Duration
	maxPercent            int
	mu                    sync.Mutex
}

func newOutlier(spec *OutlierDetectionSpec) *outlier {
	return &outlier{
		consec5xx:  int32(cmp(spec.Consecutive5xx, DefaultConsecutive5xx)),
		consecConn: int32(cmp(spec.ConsecutiveConnectErrors, DefaultConsecutiveConnErr)),
		ejection:   cmp(spec.EjectionTime, DefaultEjectionTime),
		maxPercent: cmp(spec.MaxEjectionPercent, DefaultMaxEjectionPercent),
	}
}

// Outcomes of an attempt, as outlier detection counts them.
const (
	outcomeOK = iota
	outcome5xx
	outcomeConnErr
)

func outcomeName(outcome int) string {
	if outcome == outcome5xx {
		return "5xx"
	}
	return "no response"
}

// healthDown is the bit of serverStats.health that the active checks set
// while a server fails them; the other bits are the end of an ejection
// (Unix ns with the low bit cleared), 0 when the server is not ejected.
const healthDown = 1

// available reports whether s may take requests: it passes its active
// checks and is not ejected. The common case is one atomic load; the clock
// is read only while an ejection is recorded.
func (st *serverStats) available(clk pipeline.Clock) bool {
	h := st.health.Load()
	if h == 0 {
		return true
	}
	if h&healthDown != 0 {
		return false
	}
	if clk.Now().UnixNano() < int64(h) {
		return false
	}
	st.health.CompareAndSwap(h, 0) // the ejection is over
	return true
}

// ejected reports whether st is ejected at now.
func (st *serverStats) ejected(now time.Time) bool {
	h := st.health.Load() &^ healthDown
	return h != 0 && now.UnixNano() < int64(h)
}

// record feeds an attempt's outcome on s to outlier detection of p.
func (o *outlier) record(p *Pool, s *Server, outcome int) {
	st := s.stats
	var n, limit int32
	switch outcome {
	case outcomeOK:
		if st.consec5xx.Load() != 0 {
			st.consec5xx.Store(0)
		}
		if st.consecConn.Load() != 0 {
			st.consecConn.Store(0)
		}
		return
	case outcome5xx:
		st.consecConn.Store(0)
		n, limit = st.consec5xx.Add(1), o.consec5xx
	default:
		st.consec5xx.Store(0)
		n, limit = st.consecConn.Add(1), o.consecConn
	}
	if n < limit {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := p.now()
	if st.ejected(now) {
		return
	}
	ejected := 0
	for _, x := range p.servers {
		if x.stats.ejected(now) {
			ejected++
		}
	}
	if (ejected+1)*100 > o.maxPercent*len(p.servers) {
		return // at the limit: keep counting, try again on the next failure
	}
	until := uint64(now.Add(o.ejection).UnixNano()) &^ healthDown
	for {
		h := st.health.Load()
		if st.health.CompareAndSwap(h, until|h&healthDown) {
			break
		}
	}
	st.consec5xx.Store(0)
	st.consecConn.Store(0)
	p.log.Warn("server ejected", "server", s.url, "outcome", outcomeName(outcome), "in_a_row", n, "for", o.ejection)
}

// report records the outcome of an active check of s.
func (hc *healthCheck) report(p *Pool, s *Server, ok bool) {
	st := s.stats
	st.healthMu.Lock()
	defer st.healthMu.Unlock()
	down := st.health.Load()&healthDown != 0
	if ok {
		st.checkFails, st.checkPasses = 0, st.checkPasses+1
		if down && st.checkPasses >= hc.passes {
			st.health.And(^uint64(healthDown))
			p.log.Info("server up: passed its health checks", "server", s.url, "passes", st.checkPasses)
		}
	} else {
		st.checkPasses, st.checkFails = 0, st.checkFails+1
		if !down && st.checkFails >= hc.fails {
			st.health.Or(healthDown)
			p.log.Warn("server down: failed its health checks", "server", s.url, "fails", st.checkFails)
		}
	}
	st.checks.Add(1)
}

// healthAware wraps a pool's load balancer when the pool has health
// checks or outlier detection: a server that is down or ejected is
// replaced by another that is not. Hash and sticky policies move the key
// to the next available server in the pool's order, so their keys stay
// put; the others start from a random server. When no server is
// available, the policy's choice stands (fail open).
type healthAware struct {
	base          LoadBalancer
	servers       []*Server
	clock         pipeline.Clock
	deterministic bool // base hashes: replace by the next server, not a random one
	counts        bool // base counts attempts in flight (FeedbackBalancer)
}

func newHealthAware(base LoadBalancer, spec *LoadBalanceSpec, servers []*Server, clk pipeline.Clock) *healthAware {
	if clk == nil {
		clk = clock.Real()
	}
	_, counts := base.(FeedbackBalancer)
	return &healthAware{
		base:    base,
		servers: servers,
		clock:   clk,
		deterministic: spec.Policy == PolicyIPHash || spec.Policy == PolicyHeaderHash || spec.Policy == PolicyCookieHash ||
			(spec.StickySession != nil && spec.StickySession.Mode != ""),
		counts: counts,
	}
}

func (lb *healthAware) Choose(r *http.Request) *Server {
	s := lb.base.Choose(r)
	if s == nil || s.stats.available(lb.clock) {
		return s
	}
	n := len(lb.servers)
	start := s.idx + 1
	if !lb.deterministic {
		start = rand.IntN(n) // #nosec G404 -- load balancing, not a secret
	}
	for k := range n {
		c := lb.servers[(start+k)%n]
		if c == s || !c.stats.available(lb.clock) {
			continue
		}
		if lb.counts {
			s.stats.inflight.Add(-1)
			c.stats.inflight.Add(1)
		}
		return c
	}
	return s // none available: fail open
}

func (lb *healthAware) inherit(prev LoadBalancer) {
	if h, ok := prev.(*healthAware); ok {
		prev = h.base
	}
	if inh, ok := lb.base.(inheritor); ok {
		inh.inherit(prev)
	}
}

// checker runs the active health checks of a Proxy's pools on one
// goroutine, started by the first Handle and stopped by Close.
type checker struct {
	p     *Proxy
	pools []*Pool // the pools with a health check
	clock pipeline.Clock

	started atomic.Bool // fast path of start
	mu      sync.Mutex  // guards the fields below and the start
	running bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

func newChecker(p *Proxy, clk pipeline.Clock) *checker {
	var pools []*Pool
	for _, pl := range p.pools {
		if pl.check != nil {
			pools = append(pools, pl)
		}
	}
	if len(pools) == 0 {
		return nil
	}
	if clk == nil {
		clk = clock.Real()
	}
	return &checker{p: p, pools: pools, clock: clk}
}

// start starts the checks unless they run or the Proxy is closed.
func (c *checker) start() {
	if c.started.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running || c.closed {
		return
	}
	c.running = true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.done = make(chan struct{})
	c.started.Store(true)
	go c.run()
}

// stop stops the checks and waits for the goroutine to end.
func (c *checker) stop() {
	c.mu.Lock()
	c.closed = true
	running := c.running
	c.mu.Unlock()
	if running {
		c.cancel()
		<-c.done
	}
}

func (c *checker) run() {
	defer close(c.done)
	next := make([]time.Time, len(c.pools))
	now := c.clock.Now()
	for i, p := range c.pools {
		next[i] = now.Add(p.check.interval)
	}
	for {
		t := c.clock.NewTimer(slices.MinFunc(next, time.Time.Compare).Sub(c.clock.Now()))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		now := c.clock.Now()
		for i, p := range c.pools {
			if !now.Before(next[i]) {
				c.checkPool(p)
				next[i] = now.Add(p.check.interval)
			}
		}
	}
}

// checkPool checks every server of p at once and waits for the outcomes.
func (c *checker) checkPool(p *Pool) {
	if p.dyn != nil {
		if p = p.dyn.current(); p == nil {
			return
		}
	}
	var wg sync.WaitGroup
	for _, s := range p.servers {
		wg.Go(func() {
			ok := c.probe(p, s)
			if c.ctx.Err() == nil {
				p.check.report(p, s, ok)
			}
		})
	}
	wg.Wait()
}

// probe sends one check request to s and reports whether it passed.
func (c *checker) probe(p *Pool, s *Server) bool {
	hc := p.check
	ctx, cancel := resilience.WithTimeout(c.ctx, c.clock, hc.timeout)
	defer cancel()
	path, query, _ := strings.Cut(hc.path, "?")
	target := s.scheme + "://" + s.host + strings.TrimSuffix(s.escPath, "/") + path
	if query != "" {
		target += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, hc.method, target, nil)
	if err != nil {
		p.log.Warn("health check: bad request", "server", s.url, "error", err)
		return false
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	if p.upstreamHost != "" {
		req.Host = p.upstreamHost
	}
	resp, err := c.p.tr.roundTripper(p.h2c).RoundTrip(req)
	if err != nil {
		p.log.Debug("health check failed", "server", s.url, "error", err)
		return false
	}
	defer resp.Body.Close()
	ok := hc.status.has(resp.StatusCode)
	if hc.body == nil {
		io.CopyN(io.Discard, resp.Body, drainLimit)
		return ok
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
	return ok && bytes.Contains(b, hc.body)
}

var (
	_ LoadBalancer = (*healthAware)(nil)
	_ inheritor    = (*healthAware)(nil)
)
