package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/httpx"
)

// Pipeline is a built, immutable flow of filters. It serves requests
// concurrently; a new configuration is a new Pipeline that inherits from the
// old one, never a mutation.
type Pipeline struct {
	name     string
	steps    []step
	filters  []built
	policies Policies
	logger   *slog.Logger
	clock    Clock
	tel      telemetry
	st       *pipelineStats // nil without Env.Stats (see stats.go)
	pool     sync.Pool

	inflight  atomic.Int64
	closing   atomic.Bool
	drained   chan struct{}
	drainOnce sync.Once
	closeOnce sync.Once

	requests   atomic.Uint64
	panics     atomic.Uint64
	undeclared atomic.Uint64
}

type built struct {
	name   string
	kind   Kind
	filter Filter
}

type step struct {
	name   string
	ns     string
	filter Filter
	kind   *Kind
	jumps  []jump
	end    bool // an END step
}

type jump struct {
	result Result
	to     int // index of the next step; len(steps) is END
}

// New builds a pipeline from spec with the kinds in reg. It checks the whole
// flow before it returns: unknown kinds or filters, duplicate names, jumpIf
// on results the filter's kind does not declare, and jumps that do not go
// forward are errors naming the field (see FieldError). On error, filters
// already built are closed.
func New(spec Spec, reg *Registry, env Env) (*Pipeline, error) {
	p, err := build(spec, reg, env)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", spec.Name, err)
	}
	return p, nil
}

func build(spec Spec, reg *Registry, env Env) (_ *Pipeline, err error) {
	if reg == nil {
		return nil, errors.New("no filter registry")
	}
	env = env.withDefaults()
	env.Pipeline = spec.Name
	logger := env.Logger.With("pipeline", spec.Name)
	p := &Pipeline{name: spec.Name, logger: logger, clock: env.Clock, drained: make(chan struct{})}
	p.pool.New = func() any { return new(Context) }
	defer func() {
		if err != nil {
			p.closeFilters()
		}
	}()

	if p.policies, err = buildPolicies(spec.Resilience, reg, env); err != nil {
		return nil, err
	}
	env.Policies = p.policies

	byName := map[string]int{}
	for i, fs := range spec.Filters {
		field := "filters[" + strconv.Itoa(i) + "]"
		if fs.Name == "" || fs.Name == End {
			return nil, &FieldError{Field: field + ".name", Line: fs.line, Err: fmt.Errorf("a filter needs a name other than %s", End)}
		}
		if _, dup := byName[fs.Name]; dup {
			return nil, &FieldError{Field: field + ".name", Line: fs.line, Err: fmt.Errorf("%w: filter %q is defined twice", ErrDuplicateName, fs.Name)}
		}
		kind, ok := reg.Kind(fs.Kind)
		if !ok {
			return nil, &FieldError{Field: field + ".kind", Line: fs.line, Err: fmt.Errorf("filter %q: %w %q", fs.Name, ErrUnknownKind, fs.Kind)}
		}
		fenv := env
		fenv.Name = fs.Name
		fenv.Logger = logger.With("filter", fs.Name)
		f, err := kind.Build(fenv, fs.Spec)
		if err != nil {
			return nil, filterErr(field, "filter", fs, err)
		}
		byName[fs.Name] = len(p.filters)
		p.filters = append(p.filters, built{name: fs.Name, kind: kind, filter: f})
	}

	flow := spec.Flow
	if len(flow) == 0 {
		for _, fs := range spec.Filters {
			flow = append(flow, Step{Filter: fs.Name})
		}
	}
	stepIndex := map[string]int{}
	p.steps = make([]step, len(flow))
	for i, st := range flow {
		field := "flow[" + strconv.Itoa(i) + "]"
		if st.Filter == End {
			// An END step ends the flow for whoever reaches it in order;
			// later steps run only when a jumpIf leads to them.
			if st.Alias != "" || st.Namespace != "" || len(st.JumpIf) > 0 {
				return nil, &FieldError{Field: field, Err: fmt.Errorf("an %s step takes no alias, namespace or jumpIf", End)}
			}
			p.steps[i] = step{name: End, end: true}
			continue
		}
		fi, ok := byName[st.Filter]
		if !ok {
			return nil, &FieldError{Field: field + ".filter", Err: fmt.Errorf("%w %q", ErrUnknownFilter, st.Filter)}
		}
		name := st.Filter
		if st.Alias != "" {
			name = st.Alias
		}
		if name == End {
			return nil, &FieldError{Field: field, Err: fmt.Errorf("%q is reserved for the end of the flow", End)}
		}
		if _, dup := stepIndex[name]; dup {
			return nil, &FieldError{Field: field, Err: fmt.Errorf("%w: step %q appears twice; give one an alias", ErrDuplicateName, name)}
		}
		stepIndex[name] = i
		ns := st.Namespace
		if ns == PrimaryNamespace {
			ns = ""
		}
		b := &p.filters[fi]
		p.steps[i] = step{name: name, ns: ns, filter: b.filter, kind: &b.kind}
	}
	for i, st := range flow {
		s := &p.steps[i]
		for res, target := range st.JumpIf {
			field := "flow[" + strconv.Itoa(i) + "].jumpIf." + res
			if !s.kind.Declares(Result(res)) {
				return nil, &FieldError{Field: field, Err: fmt.Errorf("filter %q (%s): %w: %q (declared: %v)", st.Filter, s.kind.Name, ErrUndeclaredResult, res, s.kind.Results)}
			}
			to := len(flow)
			if target != End {
				t, ok := stepIndex[target]
				if !ok {
					return nil, &FieldError{Field: field, Err: fmt.Errorf("%w %q", ErrUnknownFilter, target)}
				}
				if t <= i {
					return nil, &FieldError{Field: field, Err: fmt.Errorf("%w: %q", ErrBackwardJump, target)}
				}
				to = t
			}
			s.jumps = append(s.jumps, jump{result: Result(res), to: to})
		}
	}
	if p.tel, err = newTelemetry(env, spec.Name, p.steps); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if env.Stats {
		p.st = newPipelineStats(env.Clock, p.steps)
	}
	return p, nil
}

// filterErr places a filter's (or policy's) build error at its field in
// the pipeline spec, naming what failed: `filter "auth" (Validator)`.
func filterErr(field, what string, fs FilterSpec, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		c := *fe
		c.Field = field + pathSep(fe.Field) + fe.Field
		c.Err = fmt.Errorf("%s %q (%s): %w", what, fs.Name, fs.Kind, fe.Err)
		if c.Line == 0 {
			c.Line = fs.line
		}
		return &c
	}
	return &FieldError{Field: field, Line: fs.line, Err: fmt.Errorf("%s %q (%s): %w", what, fs.Name, fs.Kind, err)}
}

func pathSep(p string) string {
	if p == "" || p[0] == '[' {
		return ""
	}
	return "."
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.name }

// Policies returns the pipeline's resilience policies.
func (p *Pipeline) Policies() Policies { return p.policies }

// Filter returns the built filter called name.
func (p *Pipeline) Filter(name string) (Filter, bool) {
	for _, b := range p.filters {
		if b.name == name {
			return b.filter, true
		}
	}
	return nil, false
}

// Run runs the flow on c and returns the result of the last filter that
// returned one (Continue if none did). It does not write a response or run
// the OnFinish hooks; ServeHTTP does both. A filter that returns a result its
// kind does not declare ends the flow with a 500 response: that is a bug in
// the filter, logged as an error.
func (p *Pipeline) Run(c *Context) Result {
	var last Result
	for i := 0; i < len(p.steps); {
		s := &p.steps[i]
		if s.end {
			break
		}
		if s.ns == "" {
			c.cur = 0
		} else {
			c.UseNamespace(s.ns)
		}
		span := p.tel.startStep(c, i)
		var t0 time.Time
		observed := p.st != nil || c.explain != nil
		if observed {
			t0 = p.clock.Now()
		}
		r := s.filter.Handle(c)
		if observed {
			p.observeStep(c, i, r, t0)
		}
		endStep(c, span, r)
		if r == Continue {
			i++
			continue
		}
		last = r
		if !s.kind.Declares(r) {
			p.undeclared.Add(1)
			p.logger.Error("filter returned a result its kind does not declare", "filter", s.name, "kind", s.kind.Name, "result", string(r))
			c.cur = 0
			c.Respond(http.StatusInternalServerError, "internal error\n")
			return r
		}
		next := -1
		for _, j := range s.jumps {
			if j.result == r {
				next = j.to
				break
			}
		}
		if next < 0 {
			break
		}
		i = next
	}
	c.cur = 0
	return last
}

// ServeHTTP runs the flow for r and writes the primary namespace's response
// (200 with an empty body if no filter set one) with WriteResponse. A 101
// Switching Protocols whose body is the upgraded connection is served until
// that connection ends; any other 1xx status is answered with 500. A panic
// in a filter is recovered, logged with its stack, counted, and answered
// with 500.
func (p *Pipeline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.inflight.Add(1)
	p.serveAround(w, r, nil, nil)
}

// TryServeHTTP serves r as ServeHTTP does, unless the pipeline has begun to
// shut down: then it returns false without touching w or r, so that the
// caller can serve r with the pipeline's successor. A request it accepts
// counts as in flight before the shutdown can see it, so the filters are
// never closed under it.
func (p *Pipeline) TryServeHTTP(w http.ResponseWriter, r *http.Request) bool {
	return p.TryServeAround(w, r, nil, nil)
}

// TryServeAround serves r as TryServeHTTP does, with two more pipelines
// run on the same Context: before runs first and, unless it answered the
// request (set the primary response: a Validator's 401, a rate limiter's
// 429), p runs next; after always runs last and sees the response,
// whichever pipeline set it. Either may be nil. The caller keeps before
// and after open for the call (see Acquire). This is how a GlobalFilter
// wraps the backend pipelines of a server.
func (p *Pipeline) TryServeAround(w http.ResponseWriter, r *http.Request, before, after *Pipeline) bool {
	if !p.Acquire() {
		return false
	}
	p.serveAround(w, r, before, after)
	return true
}

// Acquire counts a use of p that is not a request of its own (p runs as
// another pipeline's before or after flow, see TryServeAround), so that
// Shutdown waits for it; it reports false, counting nothing, once p has
// begun to shut down. Each Acquire that reports true needs a Release. A
// nil p is always acquired.
func (p *Pipeline) Acquire() bool {
	if p == nil {
		return true
	}
	p.inflight.Add(1)
	if p.closing.Load() {
		p.done()
		return false
	}
	return true
}

// Release ends a use counted by Acquire.
func (p *Pipeline) Release() {
	if p != nil {
		p.done()
	}
}

// runAround runs before, p unless before answered, and after on c.
func (p *Pipeline) runAround(c *Context, before, after *Pipeline) {
	if before != nil {
		before.Run(c)
	}
	if before == nil || c.ex[0].resp == nil {
		p.Run(c)
	}
	if after != nil {
		after.Run(c)
	}
}

// serveAround handles a request already counted in flight, with the flows
// of TryServeAround.
func (p *Pipeline) serveAround(w http.ResponseWriter, r *http.Request, before, after *Pipeline) {
	defer p.done()
	p.requests.Add(1)
	var start time.Time
	if p.tel.timed() || p.st != nil {
		start = p.clock.Now() // only when measured: the clock costs ~50 ns a read
	}
	r, span := p.tel.startRequest(r)
	code := http.StatusInternalServerError
	c := p.pool.Get().(*Context)
	c.reset(r, p.logger)
	c.w = w
	c.explain = explainOf(r)
	wrote := false
	defer func() {
		if p.tel.timed() {
			p.tel.endRequest(r.Context(), span, code, p.clock.Now().Sub(start))
		} else {
			p.tel.endRequest(r.Context(), span, code, 0)
		}
		if p.st != nil {
			p.st.request(c, r, code, start)
		}
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				p.release(c)
				panic(v)
			}
			p.panics.Add(1)
			p.logger.Error("panic in pipeline", "panic", v, "stack", string(debug.Stack()))
			if !wrote {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		} else if !wrote {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		p.release(c)
	}()
	if before == nil && after == nil {
		p.Run(c)
	} else {
		p.runAround(c, before, after)
	}
	if c.explain != nil {
		writeExplain(w, c)
	}
	resp := c.ex[0].resp
	if resp == nil {
		wrote = true
		code = http.StatusOK
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(code)
		return
	}
	if code = resp.StatusCode; code == 0 {
		code = http.StatusOK
	}
	if !finalStatus(code) && !switchesProtocols(resp) {
		p.logger.Error("a filter set a response status that is not a final status", "status", code)
		code = http.StatusInternalServerError
		return // the deferred handler answers 500
	}
	wrote = true
	err := WriteResponse(w, resp)
	var re *httpx.ReadError
	if errors.As(err, &re) {
		// The body failed after the status went out: abort the response so
		// that the client sees a broken stream, not a complete one.
		c.logger.Warn("response body failed mid-stream", "error", re.Err)
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		c.logger.Debug("writing response", "error", err)
	}
}

// finalStatus reports whether code can end an exchange: 1xx are interim
// responses, and net/http panics on codes outside 100-999. A 101 that
// carries the upgraded connection is final too: see switchesProtocols.
func finalStatus(code int) bool { return code >= 200 && code <= 999 }

// switchesProtocols reports whether resp is a 101 Switching Protocols
// whose Body is the upgraded connection to the server (an
// io.ReadWriteCloser, as http.Transport returns it): WriteResponse then
// joins it to the client's connection.
func switchesProtocols(resp *http.Response) bool {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return false
	}
	_, ok := resp.Body.(io.ReadWriteCloser)
	return ok
}

func (p *Pipeline) release(c *Context) {
	c.cur = 0
	for i := range c.ex {
		if resp := c.ex[i].resp; resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
	}
	c.Finish()
	c.reset(nil, nil)
	p.pool.Put(c)
}

func (p *Pipeline) done() {
	if p.inflight.Add(-1) == 0 && p.closing.Load() {
		p.drainOnce.Do(func() { close(p.drained) })
	}
}

// WriteResponse writes resp to w: headers without hop-by-hop ones, status,
// and the body, flushed as it arrives when its length is unknown (streams).
// It closes resp.Body.
//
// A 101 Switching Protocols whose Body is an io.ReadWriteCloser (the
// server's end of an upgraded connection) is written with its Connection:
// Upgrade and Upgrade headers; then w's connection is hijacked and bytes
// are copied both ways until either side closes or fails, when both
// connections are closed. WriteResponse returns only then. It fails when
// w cannot be hijacked (HTTP/2, a recorder), after writing the header.
func WriteResponse(w http.ResponseWriter, resp *http.Response) error {
	if switchesProtocols(resp) {
		return switchProtocols(w, resp, resp.Body.(io.ReadWriteCloser))
	}
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	httpx.RemoveHopByHop(h)
	if resp.ContentLength >= 0 && h.Get("Content-Length") == "" && resp.Body != nil && resp.Body != http.NoBody {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	// Trailers are announced before the header is written and sent after
	// the body (gRPC status travels in them).
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	code := resp.StatusCode
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	if resp.Body == nil {
		return nil
	}
	defer resp.Body.Close()
	var flush func()
	if resp.ContentLength < 0 {
		if f, ok := w.(http.Flusher); ok {
			flush = f.Flush
		}
	}
	_, err := httpx.Copy(w, resp.Body, flush)
	for k, vv := range resp.Trailer { // filled in once the body is read
		h[http.TrailerPrefix+k] = vv
	}
	return err
}

// switchProtocols writes resp, a 101, and joins w's connection to server.
// Neither error it returns is a *httpx.ReadError: the response is
// complete once the 101 is out.
func switchProtocols(w http.ResponseWriter, resp *http.Response, server io.ReadWriteCloser) error {
	defer server.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	upgrade := resp.Header.Values("Upgrade")
	httpx.RemoveHopByHop(h)
	h.Set("Connection", "Upgrade")
	if len(upgrade) > 0 {
		h["Upgrade"] = upgrade
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("switching protocols: %v", err)
	}
	defer conn.Close()
	// The deadlines net/http set for the request must not cut the
	// upgraded connection.
	conn.SetDeadline(time.Time{})
	if err := brw.Flush(); err != nil {
		return fmt.Errorf("switching protocols: writing to the client: %v", err)
	}
	// What the client sent after its request may be buffered already.
	var client io.Reader = conn
	if brw.Reader.Buffered() > 0 {
		client = brw.Reader
	}
	errc := make(chan error, 2)
	go func() {
		_, err := httpx.Copy(server, client, nil)
		errc <- err
	}()
	go func() {
		_, err := httpx.Copy(conn, server, nil)
		errc <- err
	}()
	err = <-errc
	// One direction ended: end the other by closing both connections.
	conn.Close()
	server.Close()
	<-errc
	if err != nil {
		return fmt.Errorf("upgraded connection: %v", err)
	}
	return nil
}

// Inherit hands state over from prev: each filter of p that implements
// Inheritor gets prev's filter of the same name and kind. prev keeps serving.
func (p *Pipeline) Inherit(prev *Pipeline) error {
	if prev == nil {
		return nil
	}
	if err := p.policies.inherit(prev.policies); err != nil {
		return fmt.Errorf("pipeline %q: %w", p.name, err)
	}
	p.st.inherit(prev.st)
	for _, b := range p.filters {
		inh, ok := b.filter.(Inheritor)
		if !ok {
			continue
		}
		for _, o := range prev.filters {
			if o.name == b.name && o.kind.Name == b.kind.Name {
				if err := inh.Inherit(o.filter); err != nil {
					return fmt.Errorf("pipeline %q: filter %q: inherit: %w", p.name, b.name, err)
				}
			}
		}
	}
	return nil
}

// Shutdown waits until the requests in flight have finished, or ctx is done,
// then closes the filters. Requests that arrive after Shutdown began still
// run, but nothing waits for them.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.closing.Store(true)
	var err error
	if p.inflight.Load() > 0 {
		select {
		case <-p.drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	p.closeFilters()
	return err
}

// Close is Shutdown without a time limit.
func (p *Pipeline) Close() error { return p.Shutdown(context.Background()) }

func (p *Pipeline) closeFilters() {
	p.closeOnce.Do(func() {
		for _, b := range p.filters {
			if c, ok := b.filter.(Closer); ok {
				if err := c.Close(); err != nil {
					p.logger.Warn("closing filter", "filter", b.name, "error", err)
				}
			}
		}
		for _, err := range p.policies.close() {
			p.logger.Warn("closing policy", "error", err)
		}
	})
}

// Status is a pipeline's runtime status.
type Status struct {
	Requests uint64 `json:"requests" yaml:"requests"`
	InFlight int64  `json:"inFlight" yaml:"inFlight"`
	Panics   uint64 `json:"panics" yaml:"panics"`
	// Undeclared counts results that filters returned without declaring them.
	Undeclared uint64         `json:"undeclaredResults" yaml:"undeclaredResults"`
	Filters    map[string]any `json:"filters,omitempty" yaml:"filters,omitempty"`
	// Stats are the pipeline's statistics; absent without Env.Stats.
	Stats *Stats `json:"stats,omitempty" yaml:"stats,omitempty"`
}

// Status reports counters and each filter's status.
func (p *Pipeline) Status() Status {
	s := Status{
		Requests:   p.requests.Load(),
		InFlight:   p.inflight.Load(),
		Panics:     p.panics.Load(),
		Undeclared: p.undeclared.Load(),
		Stats:      p.statsPtr(),
	}
	for _, b := range p.filters {
		if st, ok := b.filter.(Statuser); ok {
			if s.Filters == nil {
				s.Filters = map[string]any{}
			}
			s.Filters[b.name] = st.Status()
		}
	}
	return s
}

var _ http.Handler = (*Pipeline)(nil)
