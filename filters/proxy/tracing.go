package proxy

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicegw/sluice/pipeline"
)

// instrumentationName names the Proxy's tracer.
const instrumentationName = "github.com/sluicegw/sluice/filters/proxy"

// attemptTracing traces each attempt of a pool as a client span, a child
// of the request's span (the pipeline's filter step), and injects the
// span's context into the outbound request (W3C traceparent, B3 or
// whatever the Env's propagator writes). It is nil without a
// TracerProvider.
type attemptTracing struct {
	tracer trace.Tracer
	active pipeline.Activity // nil: always on
	prop   propagation.TextMapPropagator
}

func newAttemptTracing(env pipeline.Env) *attemptTracing {
	if env.TracerProvider == nil {
		return nil
	}
	t := &attemptTracing{tracer: env.TracerProvider.Tracer(instrumentationName), prop: env.Propagation()}
	t.active, _ = env.TracerProvider.(pipeline.Activity)
	return t
}

// start starts the span of attempt n on s, when the request is traced.
func (t *attemptTracing) start(ctx context.Context, p *Pool, s *Server, n int) (context.Context, trace.Span) {
	if t == nil || (t.active != nil && !t.active.Active()) || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return t.tracer.Start(ctx, "upstream "+s.host, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("server.address", s.host),
			attribute.String("url.scheme", s.scheme),
			attribute.String("sluice.pool", p.field),
			attribute.Int("sluice.attempt", n),
		))
}

// inject writes the trace context of ctx into h.
func (t *attemptTracing) inject(ctx context.Context, span trace.Span, h http.Header) {
	if span != nil {
		t.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// endSpan ends an attempt's span with the status it got.
func endSpan(span trace.Span, code int) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, "status "+strconv.Itoa(code))
	}
	span.End()
}
