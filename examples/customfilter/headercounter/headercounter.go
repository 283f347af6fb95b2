// Package headercounter is the HeaderCounter filter of Easegress's
// developer guide, written the Sluice way: a spec struct, a Kind made with
// pipeline.Define, and a Filter with lock-free counters.
//
// # Model
//
// The filter is configured with a list of header names:
//
//	filters:
//	  - name: headerCounter
//	    kind: HeaderCounter
//	    headers: [Cookie, Authorization]
//
// For each request, every configured header the request carries (with a
// non-empty value, as in Easegress) adds one to that header's count. A
// request that carries none of them gets a 400 response saying which headers
// it needs, and the filter returns ResultInvalidHeader, so that
//
//	flow:
//	  - filter: headerCounter
//	    jumpIf: { invalidHeader: END }
//	  - filter: proxy
//
// ends the flow before the proxy. Status reports the counts per header and
// the number of rejected requests.
//
// # Lifecycle and concurrency
//
// Kind decodes the YAML strictly into Spec (an unknown key is an error with
// its line), runs Spec.Validate and builds a Counter with New. Handle runs
// concurrently for every request of the pipeline: each header has its own
// atomic counter, so the hot path takes no lock and allocates nothing (the
// 400 response of a rejected request aside). When the pipeline is updated,
// the new Counter's Inherit takes over the counters of the headers that are
// still configured; the two generations share those counters, so requests
// the old generation finishes after the swap are still counted.
//
// To use the kind, register it with the gateway:
//
//	g, err := sluice.New(sluice.WithFilterKinds(headercounter.Kind))
package headercounter

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/sluicegw/sluice/pipeline"
)

// ResultInvalidHeader is returned for a request that carries none of the
// configured headers; the filter has set a 400 response.
const ResultInvalidHeader pipeline.Result = "invalidHeader"

// Kind is the HeaderCounter filter kind.
var Kind = pipeline.Define[Spec]("HeaderCounter", []pipeline.Result{ResultInvalidHeader},
	func(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
		c, err := New(s)
		if err != nil {
			return nil, err
		}
		return c, nil
	}).WithDescription("counts the requests that carry each configured header and rejects those that carry none")

// Counter is a built HeaderCounter filter.
type Counter struct {
	headers  []string   // canonical names, in spec order
	counts   []*counter // counts[i] counts headers[i]
	rejected *counter
	message  string // body of the 400 response
}

// counter is an atomic count padded to a cache line, so that requests
// counting different headers do not contend on one line.
type counter struct {
	n atomic.Int64
	_ [56]byte
}

// New builds a Counter from s, which it validates first.
func New(s *Spec) (*Counter, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	c := &Counter{
		headers:  make([]string, len(s.Headers)),
		counts:   make([]*counter, len(s.Headers)),
		rejected: new(counter),
	}
	for i, h := range s.Headers {
		c.headers[i] = http.CanonicalHeaderKey(h)
		c.counts[i] = new(counter)
	}
	c.message = "missing header: the request needs one of " + strings.Join(c.headers, ", ") + "\n"
	return c, nil
}

// Handle counts the configured headers the request carries. With none of
// them, it responds 400 and returns ResultInvalidHeader.
func (c *Counter) Handle(ctx *pipeline.Context) pipeline.Result {
	h := ctx.Request().Header
	counted := false
	for i, name := range c.headers {
		if carries(h[name]) {
			c.counts[i].n.Add(1)
			counted = true
		}
	}
	if counted {
		return pipeline.Continue
	}
	c.rejected.n.Add(1)
	ctx.Respond(http.StatusBadRequest, c.message)
	return ResultInvalidHeader
}

// carries reports whether a header has a non-empty value.
func carries(values []string) bool {
	for _, v := range values {
		if v != "" {
			return true
		}
	}
	return false
}

// Status is what Counter.Status reports.
type Status struct {
	// Counts maps each configured header (canonical name) to the number of
	// requests that carried it.
	Counts map[string]int64 `json:"counts" yaml:"counts"`
	// Rejected is the number of requests that carried none of the headers.
	Rejected int64 `json:"rejected" yaml:"rejected"`
}

// Status returns the counts so far. It is safe to call while requests are
// handled; the counts are read one by one, not as one snapshot.
func (c *Counter) Status() any {
	st := Status{Counts: make(map[string]int64, len(c.headers)), Rejected: c.rejected.n.Load()}
	for i, name := range c.headers {
		st.Counts[name] = c.counts[i].n.Load()
	}
	return st
}

// Inherit takes over the counters of prev (the filter of the same name in
// the pipeline generation being replaced) for every header that is still
// configured, and its rejected count. Counters are shared, not copied: prev
// keeps serving until the swap, and what it counts then is kept. Headers no
// longer configured are dropped; new ones start at zero.
func (c *Counter) Inherit(prev pipeline.Filter) error {
	p, ok := prev.(*Counter)
	if !ok {
		return nil // another implementation: nothing to take over
	}
	for i, name := range c.headers {
		for j, old := range p.headers {
			if old == name {
				c.counts[i] = p.counts[j]
				break
			}
		}
	}
	c.rejected = p.rejected
	return nil
}

var (
	_ pipeline.Filter    = (*Counter)(nil)
	_ pipeline.Statuser  = (*Counter)(nil)
	_ pipeline.Inheritor = (*Counter)(nil)
)
