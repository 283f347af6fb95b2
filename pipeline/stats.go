package pipeline

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/stats"
)

// Recorder records the traffic of one object (a server, a route, a
// pipeline, a filter, a backend) without locks or allocations: counts by
// status code, rates, latency percentiles and body sizes. Gates and filters
// that keep statistics of their own use it, so that the gateway shows and
// exports them like its own; create one with NewRecorder.
type Recorder = stats.Recorder

// StatsSnapshot is a Recorder's statistics at one moment, as the admin API
// shows them.
type StatsSnapshot = stats.Snapshot

// StatsHistogram is a Recorder's lifetime latency histogram cut at fixed
// bounds (Recorder.Cumulative), for metrics exporters.
type StatsHistogram = stats.Cumulative

// TopItem is a key (a request path) with its estimated count.
type TopItem = stats.Item

// NewRecorder returns an empty Recorder reading the time from c (nil: the
// system clock).
func NewRecorder(c Clock) *Recorder { return stats.New(c) }

// pipelineStats are a pipeline's recorders: one for the pipeline and one
// per flow step. They live behind a pointer that Inherit hands to the next
// generation, step by step for the steps with the same name and kind.
type pipelineStats struct {
	clock Clock
	rec   *stats.Recorder
	steps []*stepStats // by step index; nil for END steps
}

// stepStats are one flow step's figures: a Recorder whose status is the
// primary response's after the step (200 while there is none), and the
// count of each result.
type stepStats struct {
	name, kind string
	rec        *stats.Recorder
	results    []Result        // Continue, then the kind's declared results
	counts     []atomic.Uint64 // by index in results; the last counts undeclared ones
}

func newPipelineStats(c Clock, steps []step) *pipelineStats {
	ps := &pipelineStats{clock: c, rec: stats.New(c), steps: make([]*stepStats, len(steps))}
	for i, s := range steps {
		if s.end {
			continue
		}
		ss := &stepStats{name: s.name, kind: s.kind.Name, rec: stats.New(c)}
		ss.results = append([]Result{Continue}, s.kind.Results...)
		ss.counts = make([]atomic.Uint64, len(ss.results)+1)
		ps.steps[i] = ss
	}
	return ps
}

// inherit takes prev's recorders: the pipeline's, and those of the steps
// with the same name and kind, so that the figures survive a reload.
func (ps *pipelineStats) inherit(prev *pipelineStats) {
	if ps == nil || prev == nil {
		return
	}
	ps.rec = prev.rec
	for i, s := range ps.steps {
		if s == nil {
			continue
		}
		for _, o := range prev.steps {
			if o != nil && o.name == s.name && o.kind == s.kind && len(o.results) == len(s.results) {
				ps.steps[i] = o
				break
			}
		}
	}
}

// step records step i's run, which began at start and returned r.
func (ps *pipelineStats) step(c *Context, i int, r Result, start, now time.Time) {
	ss := ps.steps[i]
	code := http.StatusOK
	if resp := c.ex[0].resp; resp != nil && resp.StatusCode != 0 {
		code = resp.StatusCode
	}
	ss.rec.RecordAt(now, code, now.Sub(start), 0, 0)
	j := len(ss.results)
	for k, res := range ss.results {
		if res == r {
			j = k
			break
		}
	}
	ss.counts[j].Add(1)
}

// Stats are a pipeline's statistics.
type Stats struct {
	// Pipeline covers every request the pipeline served: status, duration
	// from entering the pipeline to the response written, and the
	// response's declared length (the request's Content-Length for the
	// request size).
	Pipeline StatsSnapshot `json:"pipeline" yaml:"pipeline"`
	// Filters are the flow's steps in order.
	Filters []FilterStats `json:"filters" yaml:"filters"`
}

// FilterStats are one flow step's statistics.
type FilterStats struct {
	// Name is the step's name (its alias, or its filter's name).
	Name string `json:"name" yaml:"name"`
	// Kind is the filter's kind.
	Kind string `json:"kind" yaml:"kind"`
	// Stats time each run of the step; the status is the primary
	// response's after the step, 200 while no filter has set one.
	Stats StatsSnapshot `json:"stats" yaml:"stats"`
	// Results counts the runs by result, "continue" for Continue;
	// results never seen are left out.
	Results map[string]uint64 `json:"results,omitempty" yaml:"results,omitempty"`
}

// Stats returns the pipeline's statistics; ok is false when the pipeline
// was built without them (Env.Stats).
func (p *Pipeline) Stats() (s Stats, ok bool) {
	ps := p.st
	if ps == nil {
		return Stats{}, false
	}
	now := ps.clock.Now()
	s.Pipeline = ps.rec.Snapshot(now)
	for _, ss := range ps.steps {
		if ss == nil {
			continue
		}
		fs := FilterStats{Name: ss.name, Kind: ss.kind, Stats: ss.rec.Snapshot(now)}
		for k := range ss.counts {
			n := ss.counts[k].Load()
			if n == 0 {
				continue
			}
			name := "undeclared"
			if k < len(ss.results) {
				name = string(ss.results[k])
				if name == "" {
					name = "continue"
				}
			}
			if fs.Results == nil {
				fs.Results = map[string]uint64{}
			}
			fs.Results[name] = n
		}
		s.Filters = append(s.Filters, fs)
	}
	return s, true
}

// StatsSources hands the pipeline's recorders to fn, for metrics
// exporters: the pipeline's own with filter "" and kind "", then each
// step's. It does nothing for a pipeline built without stats.
func (p *Pipeline) StatsSources(fn func(filter, kind string, r *Recorder)) {
	ps := p.st
	if ps == nil {
		return
	}
	fn("", "", ps.rec)
	for _, ss := range ps.steps {
		if ss != nil {
			fn(ss.name, ss.kind, ss.rec)
		}
	}
}

// InFlight returns the number of requests the pipeline is serving.
func (p *Pipeline) InFlight() int64 { return p.inflight.Load() }

// EachFilter calls fn with each built filter of the pipeline, by name and
// kind, in the order of the spec: the gateway finds the filters that keep
// statistics of their own this way.
func (p *Pipeline) EachFilter(fn func(name, kind string, f Filter)) {
	for _, b := range p.filters {
		fn(b.name, b.kind.Name, b.filter)
	}
}

// requestSize is r's declared body size: its Content-Length, 0 when
// unknown.
func requestSize(r *http.Request) int64 {
	if r == nil || r.ContentLength < 0 {
		return 0
	}
	return r.ContentLength
}

// request records a request the pipeline served, from start to now, with
// status code.
func (ps *pipelineStats) request(c *Context, r *http.Request, code int, start time.Time) {
	var size int64
	if resp := c.ex[0].resp; resp != nil && resp.ContentLength > 0 {
		size = resp.ContentLength
	}
	now := ps.clock.Now()
	ps.rec.RecordAt(now, code, now.Sub(start), requestSize(r), size)
}

// observeStep records step i, which began at start and returned r, in the
// stats and in the request's Explain.
func (p *Pipeline) observeStep(c *Context, i int, r Result, start time.Time) {
	now := p.clock.Now()
	if p.st != nil && p.st.steps[i] != nil {
		p.st.step(c, i, r, start, now)
	}
	if c.explain != nil {
		s := &p.steps[i]
		c.explain.AddStep(ExplainStep{Pipeline: p.name, Filter: s.name, Kind: s.kind.Name, Result: r, Took: now.Sub(start)})
	}
}

// explainOf returns the Explain of r's gate, if any.
func explainOf(r *http.Request) *Explain {
	if r == nil {
		return nil
	}
	if info := RequestInfoOf(r); info != nil {
		return info.Explain
	}
	return nil
}

// writeExplain puts the account of c's request in the response header
// its gate named, replacing any the response carries (a server must not
// forge it).
func writeExplain(w http.ResponseWriter, c *Context) {
	e := c.explain
	if e.Header == "" {
		return
	}
	if resp := c.ex[0].resp; resp != nil && resp.Header != nil {
		resp.Header.Del(e.Header)
	}
	w.Header().Set(e.Header, e.String())
}

// statsPtr returns Stats for Status, nil without them.
func (p *Pipeline) statsPtr() *Stats {
	if st, ok := p.Stats(); ok {
		return &st
	}
	return nil
}
