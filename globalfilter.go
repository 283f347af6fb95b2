package sluice

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/sluicegw/sluice/pipeline"
)

// KindGlobalFilter is the kind of GlobalFilter objects.
const KindGlobalFilter = "GlobalFilter"

// GlobalFilterSpec is a GlobalFilter object: two pipelines that run around
// the backend pipeline of every request of the HTTPServers that name it
// (their globalFilter field), on the same Context:
//
//	kind: GlobalFilter
//	name: global
//	beforePipeline:
//	  filters:
//	    - {name: auth, kind: Validator, headers: {X-Api-Key: {values: [k1]}}}
//	afterPipeline:
//	  filters:
//	    - {name: stamp, kind: ResponseAdaptor, header: {set: {X-Served-By: sluice}}}
//
// The before pipeline runs first; when it answers the request (a filter
// set the response: a Validator's 400 or 401, a rate limiter's 429), the
// backend pipeline is skipped. The after pipeline always runs, and sees and
// may change the response, whichever pipeline set it. Either may be left
// out.
type GlobalFilterSpec struct {
	BeforePipeline *pipeline.Spec `yaml:"beforePipeline,omitempty"`
	AfterPipeline  *pipeline.Spec `yaml:"afterPipeline,omitempty"`
}

// globalFilterObject is one generation of a GlobalFilter.
type globalFilterObject struct {
	before, after *pipeline.Pipeline
}

func (g *Gateway) buildGlobalFilter(env Env, spec Spec) (Object, error) {
	var gs GlobalFilterSpec
	if err := spec.Decode(&gs); err != nil {
		return nil, err
	}
	o := &globalFilterObject{}
	for _, f := range []struct {
		field string
		spec  *pipeline.Spec
		p     **pipeline.Pipeline
	}{
		{"beforePipeline", gs.BeforePipeline, &o.before},
		{"afterPipeline", gs.AfterPipeline, &o.after},
	} {
		if f.spec == nil {
			continue
		}
		f.spec.Name = spec.Name + "/" + f.field
		p, err := pipeline.New(*f.spec, g.filters, g.pipelineEnv())
		if err != nil {
			o.Close()
			return nil, prefixField(f.field, err)
		}
		*f.p = p
	}
	return o, nil
}

// prefixField puts field in front of the field path of a spec error.
func prefixField(field string, err error) error {
	var fe *pipeline.FieldError
	if errors.As(err, &fe) {
		return pipeline.FieldErr(field+"."+fe.Field, fe.Err)
	}
	return pipeline.FieldErr(field, err)
}

func (o *globalFilterObject) pipelines() []*pipeline.Pipeline {
	var ps []*pipeline.Pipeline
	for _, p := range []*pipeline.Pipeline{o.before, o.after} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (o *globalFilterObject) Inherit(prev Object) error {
	po, ok := prev.(*globalFilterObject)
	if !ok {
		return nil
	}
	for _, pair := range [][2]*pipeline.Pipeline{{o.before, po.before}, {o.after, po.after}} {
		if pair[0] != nil && pair[1] != nil {
			if err := pair[0].Inherit(pair[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *globalFilterObject) Shutdown(ctx context.Context) error {
	var errs []error
	for _, p := range o.pipelines() {
		errs = append(errs, p.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

func (o *globalFilterObject) Close() error {
	var errs []error
	for _, p := range o.pipelines() {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// GlobalFilterStatus is a GlobalFilter's runtime status.
type GlobalFilterStatus struct {
	BeforePipeline *pipeline.Status `json:"beforePipeline,omitempty" yaml:"beforePipeline,omitempty"`
	AfterPipeline  *pipeline.Status `json:"afterPipeline,omitempty" yaml:"afterPipeline,omitempty"`
}

func (o *globalFilterObject) Status() any {
	var st GlobalFilterStatus
	if o.before != nil {
		s := o.before.Status()
		st.BeforePipeline = &s
	}
	if o.after != nil {
		s := o.after.Status()
		st.AfterPipeline = &s
	}
	return st
}

// acquire counts a request on both pipelines, or on neither when one of
// them is shutting down.
func (o *globalFilterObject) acquire() bool {
	if !o.before.Acquire() {
		return false
	}
	if !o.after.Acquire() {
		o.before.Release()
		return false
	}
	return true
}

func (o *globalFilterObject) release() {
	o.before.Release()
	o.after.Release()
}

// globalSlot is where servers find the current generation of a
// GlobalFilter.
type globalSlot struct {
	gf atomic.Pointer[globalFilterObject]
}

// globalRoute is the handler of a route of a server with a globalFilter:
// the backend pipeline's slot, run between the GlobalFilter's pipelines.
type globalRoute struct {
	gf   *globalSlot
	next *pipelineSlot
}

func (h *globalRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		gf := h.gf.gf.Load()
		if gf == nil {
			http.Error(w, "service unavailable: no global filter", http.StatusServiceUnavailable)
			return
		}
		if gf.acquire() {
			defer gf.release()
			h.next.serveAround(w, r, gf.before, gf.after)
			return
		}
		if h.gf.gf.Load() == gf {
			// Shutting down and not replaced: the gateway is closing.
			http.Error(w, "service unavailable: no global filter", http.StatusServiceUnavailable)
			return
		}
	}
}

func (g *Gateway) globalSlot(name string) *globalSlot {
	g.slotMu.Lock()
	defer g.slotMu.Unlock()
	return slotOf(g.globals, name)
}

var (
	_ Inheritor = (*globalFilterObject)(nil)
	_ Statuser  = (*globalFilterObject)(nil)
)
