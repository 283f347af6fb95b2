package sluice

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluicegw/sluice/pipeline"
)

// KindTracing is the object kind that configures tracing from a spec.
const KindTracing = "Tracing"

// TracingSpec configures the gateway's tracing: how spans are sampled,
// how the trace context travels (in from clients, out to backends), and
// where spans are exported (OTLP over HTTP).
//
//	kind: Tracing
//	name: tracing
//	serviceName: edge-gateway
//	sampler: {type: ratio, ratio: 0.1}
//	propagators: [tracecontext, baggage, b3]
//	exporter:
//	  otlp:
//	    endpoint: http://otel-collector:4318/v1/traces
//	    headers: {x-api-key: secret}
//	    compression: gzip
//
// A gateway has at most one Tracing object. While it exists, every
// pipeline makes a server span per request (the parent is the client's
// trace context, if it sent one), a child span per filter step, and the
// Proxy a client span per upstream attempt whose context goes to the
// backend in the propagators' headers. Without one (and without
// WithTracerProvider) no span is made: a request pays an atomic load per
// pipeline, filter step and attempt. WithTracerProvider traces with the
// program's own provider while no Tracing object exists.
type TracingSpec struct {
	// ServiceName is the service.name of the spans' resource. Default
	// "sluice".
	ServiceName string `yaml:"serviceName,omitempty"`
	// Sampler decides which traces are recorded.
	Sampler SamplerSpec `yaml:"sampler,omitempty"`
	// Propagators are the formats the trace context is read from and
	// written in: tracecontext (W3C traceparent and tracestate), baggage
	// (W3C baggage), b3 (Zipkin's single b3 header), b3multi (X-B3-TraceId,
	// X-B3-SpanId and X-B3-Sampled). When a request carries several, the
	// last in this list wins. Default [tracecontext, baggage, b3multi].
	Propagators []string `yaml:"propagators,omitempty"`
	// Exporter is where spans go; without one spans are made (and their
	// context propagated) but not exported.
	Exporter TracingExporterSpec `yaml:"exporter,omitempty"`
}

// SamplerSpec chooses the traces to record.
type SamplerSpec struct {
	// Type is always (the default), never, or ratio (a share of the
	// traces, by trace ID).
	Type string `yaml:"type,omitempty"`
	// Ratio is the share of traces recorded with type ratio, 0 to 1.
	Ratio float64 `yaml:"ratio,omitempty"`
	// IgnoreParent makes the sampler decide for every request alone.
	// Default false: a request whose client sent a trace context follows
	// the client's sampling decision.
	IgnoreParent bool `yaml:"ignoreParent,omitempty"`
}

// TracingExporterSpec is where spans are exported.
type TracingExporterSpec struct {
	// OTLP exports spans with the OpenTelemetry protocol over HTTP
	// (protobuf), in batches.
	OTLP *OTLPExporterSpec `yaml:"otlp,omitempty"`
}

// OTLPExporterSpec is an OTLP/HTTP trace exporter.
type OTLPExporterSpec struct {
	// Endpoint is the collector's full URL, such as
	// http://otel-collector:4318/v1/traces. Required.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export (an API key).
	Headers map[string]string `yaml:"headers,omitempty"`
	// Compression is none (the default) or gzip.
	Compression string `yaml:"compression,omitempty"`
	// Timeout bounds one export. Default 10s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// BatchTimeout is the longest a finished span waits before it is
	// exported. Default 5s.
	BatchTimeout time.Duration `yaml:"batchTimeout,omitempty"`
}

// Validate checks the spec; errors name the field.
func (s *TracingSpec) Validate() error {
	switch s.Sampler.Type {
	case "", "always", "never":
	case "ratio":
		if !(s.Sampler.Ratio >= 0 && s.Sampler.Ratio <= 1) {
			return pipeline.FieldErr("sampler.ratio", errors.New("must be between 0 and 1"))
		}
	default:
		return pipeline.FieldErr("sampler.type", fmt.Errorf("%q: want always, never or ratio", s.Sampler.Type))
	}
	if _, err := propagators(s.Propagators); err != nil {
		return err
	}
	if o := s.Exporter.OTLP; o != nil {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return pipeline.FieldErr("exporter.otlp.endpoint", fmt.Errorf("%q: want an http or https URL", o.Endpoint))
		}
		switch o.Compression {
		case "", "none", "gzip":
		default:
			return pipeline.FieldErr("exporter.otlp.compression", fmt.Errorf("%q: want none or gzip", o.Compression))
		}
		if o.Timeout < 0 {
			return pipeline.FieldErr("exporter.otlp.timeout", errors.New("must not be negative"))
		}
		if o.BatchTimeout < 0 {
			return pipeline.FieldErr("exporter.otlp.batchTimeout", errors.New("must not be negative"))
		}
	}
	return nil
}

// propagators builds the propagator of the names.
func propagators(names []string) (propagation.TextMapPropagator, error) {
	if len(names) == 0 {
		names = []string{"tracecontext", "baggage", "b3multi"}
	}
	var ps []propagation.TextMapPropagator
	for i, n := range names {
		switch n {
		case "tracecontext":
			ps = append(ps, propagation.TraceContext{})
		case "baggage":
			ps = append(ps, propagation.Baggage{})
		case "b3":
			ps = append(ps, b3Propagator{single: true})
		case "b3multi":
			ps = append(ps, b3Propagator{})
		default:
			return nil, pipeline.FieldErr("propagators["+strconv.Itoa(i)+"]", fmt.Errorf("%q: want tracecontext, baggage, b3 or b3multi", n))
		}
	}
	return propagation.NewCompositeTextMapPropagator(ps...), nil
}

// tracingObject is a Tracing object. Its provider starts (with the batch
// exporter's goroutine) when the object goes live.
type tracingObject struct {
	name    string
	sampler sdktrace.Sampler
	res     *resource.Resource
	exp     sdktrace.SpanExporter // nil without an exporter
	batch   time.Duration
	prop    propagation.TextMapPropagator

	once sync.Once
	tp   *sdktrace.TracerProvider
}

func (g *Gateway) tracingKind() ObjectKind {
	return DefineObject(KindTracing, CategorySystem, func(env Env, s *TracingSpec) (Object, error) {
		for name, e := range g.objects { // g.mu is held while objects build
			if e.kind.Kind == KindTracing && name != env.Name {
				return nil, fmt.Errorf("%w: the gateway has a Tracing object already: %q", ErrBadSpec, name)
			}
		}
		return newTracingObject(env.Name, s)
	}).WithDescription("tracing: sampling, trace context propagation and the OTLP exporter")
}

func newTracingObject(name string, s *TracingSpec) (*tracingObject, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	o := &tracingObject{name: name, batch: 5 * time.Second}
	o.prop, _ = propagators(s.Propagators)
	switch s.Sampler.Type {
	case "never":
		o.sampler = sdktrace.NeverSample()
	case "ratio":
		o.sampler = sdktrace.TraceIDRatioBased(s.Sampler.Ratio)
	default:
		o.sampler = sdktrace.AlwaysSample()
	}
	if !s.Sampler.IgnoreParent {
		o.sampler = sdktrace.ParentBased(o.sampler)
	}
	service := s.ServiceName
	if service == "" {
		service = "sluice"
	}
	o.res = resource.NewSchemaless(attribute.String("service.name", service))
	if x := s.Exporter.OTLP; x != nil {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(x.Endpoint)}
		if len(x.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(x.Headers))
		}
		if x.Compression == "gzip" {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		} else {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		if x.Timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(x.Timeout))
		}
		if x.BatchTimeout > 0 {
			o.batch = x.BatchTimeout
		}
		exp, err := otlptracehttp.New(context.Background(), opts...)
		if err != nil {
			return nil, pipeline.FieldErr("exporter.otlp", err)
		}
		o.exp = exp
	}
	return o, nil
}

// provider returns the object's TracerProvider, starting it the first
// time.
func (o *tracingObject) provider() *sdktrace.TracerProvider {
	o.once.Do(func() {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(o.sampler), sdktrace.WithResource(o.res)}
		if o.exp != nil {
			opts = append(opts, sdktrace.WithBatcher(o.exp, sdktrace.WithBatchTimeout(o.batch)))
		}
		o.tp = sdktrace.NewTracerProvider(opts...)
	})
	return o.tp
}

// Close exports the spans still waiting and stops the exporter.
func (o *tracingObject) Close() error {
	started := false
	o.once.Do(func() {}) // no provider starts after Close
	if o.tp != nil {
		started = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if started {
		return o.tp.Shutdown(ctx)
	}
	if o.exp != nil {
		return o.exp.Shutdown(ctx)
	}
	return nil
}

// tracingSwitch is the TracerProvider and propagator every pipeline of
// the gateway gets: it follows the live Tracing object, or the provider of
// WithTracerProvider while there is none. It reports itself inactive
// (pipeline.Activity) when it has neither, so that nothing is traced and
// nothing allocated.
type tracingSwitch struct {
	embedded.TracerProvider
	fixed trace.TracerProvider // WithTracerProvider; may be nil
	cur   atomic.Pointer[tracingObject]
	noop  trace.Tracer
	prop  propagation.TextMapPropagator // without a Tracing object
}

func newTracingSwitch(fixed trace.TracerProvider) *tracingSwitch {
	return &tracingSwitch{
		fixed: fixed,
		noop:  noop.NewTracerProvider().Tracer(""),
		prop:  propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
}

// set makes o the live Tracing object; nil with a name unsets it if that
// is the live one's.
func (s *tracingSwitch) set(o *tracingObject) {
	o.provider()
	s.cur.Store(o)
}

func (s *tracingSwitch) unset(name string) {
	if o := s.cur.Load(); o != nil && o.name == name {
		s.cur.CompareAndSwap(o, nil)
	}
}

// Active reports whether spans are made.
func (s *tracingSwitch) Active() bool { return s.cur.Load() != nil || s.fixed != nil }

func (s *tracingSwitch) provider() trace.TracerProvider {
	if o := s.cur.Load(); o != nil {
		return o.tp
	}
	return s.fixed
}

// Tracer returns a tracer that follows the switch.
func (s *tracingSwitch) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &switchTracer{s: s, name: name, opts: opts}
}

// Inject writes ctx's trace context in the live propagators' formats.
func (s *tracingSwitch) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	s.propagator().Inject(ctx, c)
}

// Extract reads a trace context in the live propagators' formats.
func (s *tracingSwitch) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return s.propagator().Extract(ctx, c)
}

// Fields are the headers of the live propagators.
func (s *tracingSwitch) Fields() []string { return s.propagator().Fields() }

func (s *tracingSwitch) propagator() propagation.TextMapPropagator {
	if o := s.cur.Load(); o != nil {
		return o.prop
	}
	return s.prop
}

// switchTracer starts spans with the switch's current provider, keeping
// that provider's tracer until the provider changes.
type switchTracer struct {
	embedded.Tracer
	s     *tracingSwitch
	name  string
	opts  []trace.TracerOption
	cache atomic.Pointer[tracerOf]
}

type tracerOf struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

func (t *switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	tp := t.s.provider()
	if tp == nil {
		return t.s.noop.Start(ctx, name, opts...)
	}
	c := t.cache.Load()
	if c == nil || c.tp != tp {
		c = &tracerOf{tp: tp, t: tp.Tracer(t.name, t.opts...)}
		t.cache.Store(c)
	}
	return c.t.Start(ctx, name, opts...)
}

// b3Propagator reads and writes Zipkin's B3 headers: the single "b3"
// header (traceid-spanid-sampled) or the X-B3-* ones. It reads both
// whichever it writes.
type b3Propagator struct {
	single bool
}

const (
	b3Single  = "b3"
	b3TraceID = "x-b3-traceid"
	b3SpanID  = "x-b3-spanid"
	b3Sampled = "x-b3-sampled"
	b3Flags   = "x-b3-flags"
)

func (b b3Propagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	sampled := "0"
	if sc.IsSampled() {
		sampled = "1"
	}
	if b.single {
		c.Set(b3Single, sc.TraceID().String()+"-"+sc.SpanID().String()+"-"+sampled)
		return
	}
	c.Set(b3TraceID, sc.TraceID().String())
	c.Set(b3SpanID, sc.SpanID().String())
	c.Set(b3Sampled, sampled)
}

func (b b3Propagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	var tid, sid, sampled string
	if v := c.Get(b3Single); v != "" {
		parts := strings.Split(v, "-")
		if len(parts) < 2 || len(parts) > 4 {
			return ctx
		}
		tid, sid = parts[0], parts[1]
		if len(parts) > 2 {
			sampled = parts[2]
		}
	} else {
		tid, sid, sampled = c.Get(b3TraceID), c.Get(b3SpanID), c.Get(b3Sampled)
		if c.Get(b3Flags) == "1" {
			sampled = "d"
		}
	}
	if len(tid) == 16 {
		tid = "0000000000000000" + tid // 64-bit trace IDs
	}
	var cfg trace.SpanContextConfig
	if len(tid) != 32 || len(sid) != 16 {
		return ctx
	}
	if _, err := hex.Decode(cfg.TraceID[:], []byte(tid)); err != nil {
		return ctx
	}
	if _, err := hex.Decode(cfg.SpanID[:], []byte(sid)); err != nil {
		return ctx
	}
	switch sampled {
	case "1", "d", "true":
		cfg.TraceFlags = trace.FlagsSampled
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

func (b b3Propagator) Fields() []string {
	if b.single {
		return []string{b3Single}
	}
	return []string{b3TraceID, b3SpanID, b3Sampled}
}

var (
	_ trace.TracerProvider          = (*tracingSwitch)(nil)
	_ propagation.TextMapPropagator = (*tracingSwitch)(nil)
	_ pipeline.Activity             = (*tracingSwitch)(nil)
	_ propagation.TextMapPropagator = b3Propagator{}
)
