package sluice

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/sluicegw/sluice/gate"
	"github.com/sluicegw/sluice/pipeline"
)

// The built-in object kinds.
const (
	KindHTTPServer = "HTTPServer"
	KindPipeline   = "Pipeline"
)

func (g *Gateway) builtinKinds() []ObjectKind {
	return []ObjectKind{
		{
			Kind:        KindPipeline,
			Aliases:     []string{"HTTPPipeline"},
			Category:    CategoryPipeline,
			Description: "a flow of filters that handles requests routed to it",
			DefaultSpec: func() any { return &pipeline.Spec{} },
			Build:       g.buildPipeline,
		},
		{
			Kind:        KindGlobalFilter,
			Category:    CategoryPipeline,
			Description: "pipelines that run before and after the backend pipeline of every request of the servers that name it",
			DefaultSpec: func() any { return &GlobalFilterSpec{} },
			Build:       g.buildGlobalFilter,
		},
		{
			Kind:        KindHTTPServer,
			Category:    CategoryTrafficGate,
			Description: "an HTTP listener whose rules route requests to pipelines",
			DefaultSpec: func() any { s := &gate.Spec{}; s.SetDefaults(); return s },
			Build:       g.buildServer,
		},
		g.autoCertKind(),
		g.tracingKind(),
	}
}

// pipelineObject is a Pipeline object: one generation of a pipeline.
type pipelineObject struct {
	p *pipeline.Pipeline
}

func (g *Gateway) buildPipeline(env Env, spec Spec) (Object, error) {
	var ps pipeline.Spec
	if err := spec.Decode(&ps); err != nil {
		return nil, err
	}
	ps.Name = spec.Name
	p, err := pipeline.New(ps, g.filters, g.pipelineEnv())
	if err != nil {
		return nil, err
	}
	return &pipelineObject{p: p}, nil
}

// pipelineEnv is what the gateway gives the filters of its pipelines.
func (g *Gateway) pipelineEnv() pipeline.Env {
	return pipeline.Env{
		Logger:         g.s.logger,
		Clock:          g.s.clock,
		Transport:      g.s.transport,
		TracerProvider: g.tracing,
		Propagator:     g.tracing,
		MeterProvider:  g.s.meter,
		Stats:          !g.s.noStats,
		Registries:     g.registries.lookup,
	}
}

func (o *pipelineObject) Inherit(prev Object) error {
	if po, ok := prev.(*pipelineObject); ok {
		return o.p.Inherit(po.p)
	}
	return nil
}

func (o *pipelineObject) Shutdown(ctx context.Context) error { return o.p.Shutdown(ctx) }
func (o *pipelineObject) Close() error                       { return o.p.Close() }
func (o *pipelineObject) Status() any                        { return o.p.Status() }

// serverObject is an HTTPServer object.
type serverObject struct {
	s *gate.Server
}

func (g *Gateway) buildServer(env Env, spec Spec) (Object, error) {
	gs := &gate.Spec{}
	if err := pipeline.DecodeSpec(spec.Body, gs); err != nil {
		return nil, err
	}
	s, err := gate.New(spec.Name, gs, gate.Options{
		Logger:       g.s.logger,
		Resolve:      g.resolver(gs.GlobalFilter),
		Listen:       g.s.listen,
		ListenPacket: g.s.listenPacket,
		// Certificates and HTTP-01 answers of the AutoCertManagers.
		GetCertificate: g.autocerts.getCertificate,
		HTTPChallenge:  g.autocerts.httpChallenge,
	})
	if err != nil {
		return nil, err
	}
	if !g.s.noStats {
		s.EnableStats(g.s.clock)
	}
	return &serverObject{s: s}, nil
}

func (o *serverObject) Inherit(prev Object) error {
	if so, ok := prev.(*serverObject); ok {
		o.s.Inherit(so.s)
	}
	return nil
}

func (o *serverObject) Listen() error                      { return o.s.Listen() }
func (o *serverObject) StopAccepting()                     { o.s.StopAccepting() }
func (o *serverObject) Serve()                             { o.s.Serve() }
func (o *serverObject) Shutdown(ctx context.Context) error { return o.s.Shutdown(ctx) }
func (o *serverObject) Close() error                       { return o.s.Close() }
func (o *serverObject) Status() any                        { return o.s.Status() }

// resolver returns how a server finds the handler of a backend pipeline:
// its slot, between the pipelines of the server's GlobalFilter if it names
// one.
func (g *Gateway) resolver(globalFilter string) func(string) http.Handler {
	if globalFilter == "" {
		return func(name string) http.Handler { return g.pipelineSlot(name) }
	}
	gf := g.globalSlot(globalFilter)
	return func(name string) http.Handler { return &globalRoute{gf: gf, next: g.pipelineSlot(name)} }
}

// pipelineSlot is where the routes of every server find the current
// generation of a pipeline: one atomic load per request, no map lookup.
type pipelineSlot struct {
	p atomic.Pointer[pipeline.Pipeline]
}

func (s *pipelineSlot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serveAround(w, r, nil, nil)
}

// serveAround serves r with the current generation of the pipeline, run
// between before and after (see pipeline.Pipeline.TryServeAround).
func (s *pipelineSlot) serveAround(w http.ResponseWriter, r *http.Request, before, after *pipeline.Pipeline) {
	for {
		p := s.p.Load()
		if p == nil {
			break
		}
		if p.TryServeAround(w, r, before, after) {
			return
		}
		// p is shutting down: it was replaced (serve with its successor)
		// or the gateway is closing (answer 503).
		if s.p.Load() == p {
			break
		}
	}
	http.Error(w, "service unavailable: no pipeline", http.StatusServiceUnavailable)
}

// serverSlot is the stable handler of an HTTPServer for Handler.
type serverSlot struct {
	s atomic.Pointer[gate.Server]
}

func (s *serverSlot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if srv := s.s.Load(); srv != nil {
		srv.ServeHTTP(w, r)
		return
	}
	http.Error(w, "service unavailable: no server", http.StatusServiceUnavailable)
}

func (g *Gateway) pipelineSlot(name string) *pipelineSlot {
	g.slotMu.Lock()
	defer g.slotMu.Unlock()
	return slotOf(g.pipelines, name)
}

// slotOf returns the slot called name in m, made on first use; the caller
// holds g.slotMu.
func slotOf[S any](m map[string]*S, name string) *S {
	s, ok := m[name]
	if !ok {
		s = new(S)
		m[name] = s
	}
	return s
}

func (g *Gateway) serverSlot(name string) *serverSlot {
	g.slotMu.Lock()
	defer g.slotMu.Unlock()
	return slotOf(g.servers, name)
}

// publish makes obj the live object called name for request routing; nil
// unpublishes it.
func (g *Gateway) publish(name string, obj Object) {
	switch o := obj.(type) {
	case *pipelineObject:
		g.pipelineSlot(name).p.Store(o.p)
	case *serverObject:
		g.serverSlot(name).s.Store(o.s)
	case *globalFilterObject:
		g.globalSlot(name).gf.Store(o)
	case *tracingObject:
		g.tracing.set(o)
	case *autoCertManager:
		g.autocerts.set(name, o)
	case pipeline.ServiceRegistry:
		g.registries.set(name, o)
	case nil:
		g.tracing.unset(name)
		g.autocerts.set(name, nil)
		g.registries.set(name, nil)
		g.slotMu.Lock()
		if s, ok := g.pipelines[name]; ok {
			s.p.Store(nil)
		}
		if s, ok := g.servers[name]; ok {
			s.s.Store(nil)
		}
		if s, ok := g.globals[name]; ok {
			s.gf.Store(nil)
		}
		g.slotMu.Unlock()
	}
}

var (
	_ Gate      = (*serverObject)(nil)
	_ Inheritor = (*serverObject)(nil)
	_ Inheritor = (*pipelineObject)(nil)
)

// CloseKeepAlives is gate.Server.CloseKeepAlives.
func (o *serverObject) CloseKeepAlives(ctx context.Context) { o.s.CloseKeepAlives(ctx) }
