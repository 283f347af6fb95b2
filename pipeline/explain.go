package pipeline

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// Explain is the account of one request that its gate was asked to
// explain (gate's HTTPServer spec, explain): the route it matched, each
// filter step that ran with its result and duration, and the upstream
// servers tried. The gate creates it and hands it in RequestInfo.Explain;
// the pipeline adds the steps and, once the flow has run, writes String in
// the response header named Header; filters add what they chose (the
// Proxy, its upstream). The gate logs it when the request is done.
//
// Its methods are safe for concurrent use, and a nil *Explain ignores them
// all: a filter calls c.Explain().AddUpstream(...) without a check.
type Explain struct {
	// Header is the response header that carries the account.
	Header string

	mu        sync.Mutex
	route     string
	backend   string
	steps     []ExplainStep
	upstreams []string
}

// ExplainStep is one filter step of an explained request.
type ExplainStep struct {
	Pipeline string        `json:"pipeline"`
	Filter   string        `json:"filter"`
	Kind     string        `json:"kind"`
	Result   Result        `json:"result"`
	Took     time.Duration `json:"took"`
}

// SetRoute records the route the gate matched (its name in the spec, such
// as "rules[0].paths[1]") and its backend pipeline.
func (e *Explain) SetRoute(route, backend string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.route, e.backend = route, backend
	e.mu.Unlock()
}

// AddStep records a filter step that ran.
func (e *Explain) AddStep(s ExplainStep) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.steps = append(e.steps, s)
	e.mu.Unlock()
}

// AddUpstream records an upstream attempt, described by the filter that
// made it (say `pool=pools[0] server=http://10.0.0.1:8080 status=200`).
func (e *Explain) AddUpstream(desc string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.upstreams = append(e.upstreams, desc)
	e.mu.Unlock()
}

// Steps returns a copy of the steps recorded so far.
func (e *Explain) Steps() []ExplainStep {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ExplainStep(nil), e.steps...)
}

// String renders the account on one line, every free-form name quoted
// (so that no control character reaches a header):
//
//	route="rules[0].paths[0]" backend="api"; filter="auth" kind=Validator result=continue took=21µs; upstream pool=pools[0] server="http://10.0.0.1:8080" status=200 took=1.2ms
func (e *Explain) String() string {
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	if e.route == "" {
		b.WriteString("route=none")
	} else {
		b.WriteString("route=")
		b.WriteString(strconv.Quote(e.route))
		b.WriteString(" backend=")
		b.WriteString(strconv.Quote(e.backend))
	}
	for _, s := range e.steps {
		b.WriteString("; filter=")
		b.WriteString(strconv.Quote(s.Filter))
		if s.Pipeline != e.backend {
			b.WriteString(" pipeline=")
			b.WriteString(strconv.Quote(s.Pipeline))
		}
		b.WriteString(" kind=")
		b.WriteString(strconv.Quote(s.Kind))
		b.WriteString(" result=")
		if s.Result == Continue {
			b.WriteString("continue")
		} else {
			b.WriteString(strconv.Quote(string(s.Result)))
		}
		b.WriteString(" took=")
		b.WriteString(s.Took.String())
	}
	for _, u := range e.upstreams {
		b.WriteString("; upstream ")
		b.WriteString(u)
	}
	return b.String()
}

// Explain returns the account of the request if its gate was asked to
// explain it, or nil (the usual case; every method of a nil *Explain does
// nothing).
func (c *Context) Explain() *Explain { return c.explain }
