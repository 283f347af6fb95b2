package pipeline

import "go.opentelemetry.io/otel/propagation"

// Activity is implemented by a TracerProvider that may be switched off at
// run time (the gateway's, which follows its Tracing object): while Active
// reports false, pipelines and filters start no span and pay one atomic
// load per request instead.
type Activity interface {
	Active() bool
}

// propagator returns the Env's propagator, or W3C Trace Context and
// Baggage.
func (e Env) propagator() propagation.TextMapPropagator {
	if e.Propagator != nil {
		return e.Propagator
	}
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Propagation returns the propagator the Env asks for (Env.Propagator, or
// W3C Trace Context and Baggage when nil), for filters that inject the
// trace context into their upstream requests.
func (e Env) Propagation() propagation.TextMapPropagator { return e.propagator() }
