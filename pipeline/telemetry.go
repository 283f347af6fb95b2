package pipeline

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names the tracer and meter of the pipeline engine.
const instrumentationName = "github.com/sluicegw/sluice/pipeline"

// telemetry is a pipeline's tracing and metrics; its zero value records
// nothing, and every method is a nil check away from free.
type telemetry struct {
	tracer    trace.Tracer // nil: no tracing
	active    Activity     // nil: the tracer is always on
	prop      propagation.TextMapPropagator
	spanName  string
	stepNames []string

	requests metric.Int64Counter // nil: no metrics
	errors   metric.Int64Counter
	duration metric.Float64Histogram
	attrs    metric.MeasurementOption
}

func newTelemetry(env Env, name string, steps []step) (telemetry, error) {
	var t telemetry
	if env.TracerProvider != nil {
		t.tracer = env.TracerProvider.Tracer(instrumentationName)
		t.active, _ = env.TracerProvider.(Activity)
		t.prop = env.propagator()
		t.spanName = "pipeline " + name
		t.stepNames = make([]string, len(steps))
		for i, s := range steps {
			t.stepNames[i] = "filter " + s.name
		}
	}
	if env.MeterProvider != nil {
		m := env.MeterProvider.Meter(instrumentationName)
		var err error
		if t.requests, err = m.Int64Counter("sluice.pipeline.requests",
			metric.WithDescription("Requests the pipeline handled."), metric.WithUnit("{request}")); err != nil {
			return t, err
		}
		if t.errors, err = m.Int64Counter("sluice.pipeline.server_errors",
			metric.WithDescription("Requests the pipeline answered with a 5xx status."), metric.WithUnit("{request}")); err != nil {
			return t, err
		}
		if t.duration, err = m.Float64Histogram("sluice.pipeline.duration",
			metric.WithDescription("Time from the request entering the pipeline to the response written."), metric.WithUnit("s")); err != nil {
			return t, err
		}
		t.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("pipeline", name)))
	}
	return t, nil
}

// timed reports whether requests are timed (metrics are on).
func (t *telemetry) timed() bool { return t.requests != nil }

// startRequest starts the pipeline's span and returns r carrying it.
func (t *telemetry) startRequest(r *http.Request) (*http.Request, trace.Span) {
	if t.tracer == nil || r == nil || (t.active != nil && !t.active.Active()) {
		return r, nil
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, t.spanName, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	return r.WithContext(ctx), span
}

// endRequest ends the span and records the metrics of one request.
func (t *telemetry) endRequest(ctx context.Context, span trace.Span, code int, took time.Duration) {
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		span.End()
	}
	if t.requests != nil {
		t.requests.Add(ctx, 1, t.attrs)
		if code >= 500 {
			t.errors.Add(ctx, 1, t.attrs)
		}
		t.duration.Record(ctx, took.Seconds(), t.attrs)
	}
}

// stepSpan is a filter step's span, and the current namespace's request
// as it was before the step and as the filter got it (carrying the span,
// so that the filter's own spans are its children).
type stepSpan struct {
	span           trace.Span
	orig, withSpan *http.Request
}

// startStep starts the span of step i, a child of the request's span, and
// gives the filter the current request with the span in its context.
func (t *telemetry) startStep(c *Context, i int) stepSpan {
	if t.tracer == nil || (t.active != nil && !t.active.Active()) || !trace.SpanFromContext(c.Context()).IsRecording() {
		return stepSpan{}
	}
	ctx, span := t.tracer.Start(c.Context(), t.stepNames[i])
	ss := stepSpan{span: span}
	if r := c.Request(); r != nil {
		ss.orig, ss.withSpan = r, r.WithContext(ctx)
		c.SetRequest(ss.withSpan)
	}
	return ss
}

// endStep ends the step's span and, unless the filter replaced the
// request, gives the next steps the request as it was.
func endStep(c *Context, ss stepSpan, r Result) {
	if ss.span == nil {
		return
	}
	if ss.withSpan != nil {
		for i := range c.ex {
			if c.ex[i].req == ss.withSpan {
				c.ex[i].req = ss.orig
			}
		}
	}
	if r != Continue {
		ss.span.SetAttributes(attribute.String("sluice.result", string(r)))
	}
	ss.span.End()
}
