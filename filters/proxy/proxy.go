package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/sluicegw/sluice/pipeline"
)

// Results of the Proxy filter; see the package comment for when each occurs.
const (
	// ResultInternalError: the outbound request could not be built, or the
	// pool had no server to take it.
	ResultInternalError pipeline.Result = "internalError"
	// ResultClientError: the client went away or its body could not be read.
	ResultClientError pipeline.Result = "clientError"
	// ResultServerError: the server could not be reached or failed mid-way.
	ResultServerError pipeline.Result = "serverError"
	// ResultFailureCode: the server answered with one of the pool's
	// failureCodes; the response is kept.
	ResultFailureCode pipeline.Result = "failureCode"
	// ResultTimeout: the server did not answer in time.
	ResultTimeout pipeline.Result = "timeout"
	// ResultShortCircuited: the pool's circuit breaker is open and refused
	// the request, which was answered 503 without contacting a server.
	ResultShortCircuited pipeline.Result = "shortCircuited"
)

// Kind is the Proxy filter kind, to register with a pipeline.Registry.
var Kind = pipeline.Define("Proxy",
	[]pipeline.Result{ResultInternalError, ResultClientError, ResultServerError, ResultFailureCode, ResultTimeout, ResultShortCircuited},
	func(env pipeline.Env, spec *Spec) (pipeline.Filter, error) {
		p, err := New(env, spec)
		if err != nil {
			return nil, err
		}
		return p, nil
	},
).WithDescription("Proxy sends the request to a server of its pool and keeps the response for the next filters.")

// Proxy is the Proxy filter. Build it with New (or through Kind from YAML);
// the zero value is not usable.
type Proxy struct {
	pools      []*Pool // candidate pools in spec order, then the main pool
	candidates []*Pool // pools without the main pool
	main       *Pool
	checker    *checker // nil without active health checks
	tr         *transport
	logger     *slog.Logger
	closed     atomic.Bool
	mirror     *mirror     // nil without mirrorPool
	compress   *compressor // nil without compression
	tunnels    tunnels
}

// New builds a Proxy from spec, which it validates first (zero values mean
// the documented defaults, as in YAML), reading the TLS files the spec
// names. It uses env.Transport for upstream calls when set (the spec's
// transport settings are then ignored), and otherwise a transport of its
// own that Close releases;
// env.Clock for its time limits and health checks (nil means the real
// clock); and the
// policies in env.Policies that the pools name, which a pipeline builds
// from its resilience section. A name that is not there, or names a policy
// of another kind, is an error naming the pool's field.
func New(env pipeline.Env, spec *Spec) (*Proxy, error) {
	if spec == nil {
		return nil, errors.New("nil spec")
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{logger: logger}
	for _, fp := range spec.pools() {
		pool, err := newPool(env, fp.field, fp.spec)
		if err != nil {
			return nil, err
		}
		p.pools = append(p.pools, pool)
	}
	p.main = p.pools[len(p.pools)-1]
	p.candidates = p.pools[:len(p.pools)-1]
	ts, cfg, err := settingsOf(spec)
	if err != nil {
		return nil, err
	}
	if env.Transport != nil && (spec.TLS != nil || spec.MTLS != nil || ts.h2c) {
		logger.Warn("the Env hands in a transport: tls, mtls and protocol of the spec are ignored")
	} else if cfg != nil && cfg.InsecureSkipVerify {
		logger.Warn("tls.insecureSkipVerify is set: server certificates are not verified")
	}
	if spec.MirrorPool != nil {
		if p.mirror, err = newMirror(env, spec); err != nil {
			return nil, err
		}
	}
	if spec.Compression != nil {
		p.compress = newCompressor(spec.Compression)
	}
	p.checker = newChecker(p, env.Clock)
	p.tr = newTransport(env.Transport, ts, cfg)
	if p.mirror != nil {
		p.mirror.tr = p.tr
	}
	return p, nil
}

// Handle sends the request to a server of the first candidate pool whose
// filter matches it, or of the main pool (or answers it from the pool's
// memory cache), and sets the response, compressed when the spec asks for
// it; a copy goes to the mirror pool, if any. The first Handle starts the
// active health checks, if any. See the package comment for the results.
func (p *Proxy) Handle(c *pipeline.Context) pipeline.Result {
	if p.checker != nil {
		p.checker.start()
	}
	pool := p.main
	if len(p.candidates) > 0 {
		if r := c.Request(); r != nil && r.URL != nil {
			for _, cp := range p.candidates {
				if cp.filter.match(r) {
					pool = cp
					break
				}
			}
		}
	}
	in := c.Request()
	if upgrading(in) {
		res := pool.handle(c, in, p.tr.upgradeRoundTripper(), p.logger)
		if resp := c.Response(); resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			p.tunnels.track(resp)
		}
		return res
	}
	if p.mirror != nil && in != nil && in.URL != nil {
		in = p.mirror.tee(in)
	}
	res := pool.handle(c, in, p.tr.roundTripper(pool.h2c), p.logger)
	if p.compress != nil {
		p.compress.apply(in, c.Response())
	}
	return res
}

// Pools returns the Proxy's pools in the order requests try them: the
// candidate pools in the order of the spec (pools, then candidatePools),
// then the main pool.
func (p *Proxy) Pools() []*Pool { return slices.Clone(p.pools) }

// Inherit takes state over from prev, the Proxy this one replaces: the
// round-robin turn (also that of the hash policies' fallback) and the pool
// and server counters of the main pool and of the candidate pools at the
// same place in the order, with the servers' attempts in flight, ewma
// latencies and health (active check state and ejections) for the
// servers of those pools with the same URL, and,
// when both built their own transports with the same settings, prev's
// transport with its warm connections. prev keeps working; its Close then
// leaves the shared transport to p. A prev that is not a *Proxy is ignored.
// The breaker and retry budget are the pipeline's policies, which the
// pipeline hands over itself.
func (p *Proxy) Inherit(prev pipeline.Filter) error {
	old, ok := prev.(*Proxy)
	if !ok || old == nil || old == p {
		return nil
	}
	if p.tr.shareable(old.tr) && old.tr.acquire() {
		mine := p.tr
		p.tr = old.tr
		mine.release()
		if p.mirror != nil {
			p.mirror.tr = p.tr
		}
	}
	p.main.inherit(old.main)
	for i := range min(len(p.candidates), len(old.candidates)) {
		p.candidates[i].inherit(old.candidates[i])
	}
	return nil
}

// Close stops the active health checks and the mirror's workers, waiting
// for their goroutines to end, closes the upgraded connections (WebSockets)
// still open, and releases the Proxy's transport: the idle connections of
// its own transport are closed unless a newer Proxy took the transport
// over. It is safe to call more than once.
func (p *Proxy) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		if p.checker != nil {
			p.checker.stop()
		}
		if p.mirror != nil {
			p.mirror.close()
		}
		p.tunnels.closeAll()
		for _, pl := range p.pools {
			if pl.dyn != nil {
				pl.dyn.close()
			}
		}
		p.tr.release()
	}
	return nil
}

// Status is the Proxy's runtime status.
type Status struct {
	Pools []PoolStatus `json:"pools" yaml:"pools"`
	// Mirror counts the copies sent to the mirror pool; absent without
	// one.
	Mirror *MirrorStatus `json:"mirror,omitempty" yaml:"mirror,omitempty"`
	// Tunnels is the number of upgraded connections (WebSockets) open.
	Tunnels int `json:"tunnels,omitempty" yaml:"tunnels,omitempty"`
}

// Status returns a *Status with each pool's counters, each server's
// counters and health, and the state of the pools' breaker and retry
// policies, the pools in the order of Pools.
func (p *Proxy) Status() any {
	st := &Status{Pools: make([]PoolStatus, len(p.pools))}
	for i, pl := range p.pools {
		st.Pools[i] = pl.status()
	}
	if p.mirror != nil {
		st.Mirror = p.mirror.status()
	}
	st.Tunnels = p.tunnels.count()
	return st
}

var (
	_ pipeline.Filter    = (*Proxy)(nil)
	_ pipeline.Inheritor = (*Proxy)(nil)
	_ pipeline.Closer    = (*Proxy)(nil)
	_ pipeline.Statuser  = (*Proxy)(nil)
)
