package pipeline

import "fmt"

// Builder assembles a pipeline Spec in Go, for programs that configure
// Sluice in code rather than YAML. Each Filter call defines a filter and
// appends a step that runs it; JumpIf applies to the last step.
//
//	spec, err := pipeline.NewBuilder("api").
//		Filter("auth", "Validator", validator.Spec{...}).JumpIf("invalid", pipeline.End).
//		Filter("proxy", "Proxy", proxy.Spec{...}).
//		Spec()
type Builder struct {
	spec Spec
	err  error
}

// NewBuilder starts a pipeline spec called name.
func NewBuilder(name string) *Builder { return &Builder{spec: Spec{Name: name}} }

// Filter defines a filter called name of the given kind, whose own fields
// are spec (a spec struct, a map, or a Raw), and adds a step that runs it.
func (b *Builder) Filter(name, kind string, spec any) *Builder {
	var raw Raw
	if spec != nil {
		raw = RawOf(spec)
	}
	b.spec.Filters = append(b.spec.Filters, FilterSpec{Name: name, Kind: kind, Spec: raw})
	b.spec.Flow = append(b.spec.Flow, Step{Filter: name})
	return b
}

// Namespace sets the namespace of the last step.
func (b *Builder) Namespace(ns string) *Builder {
	if s := b.last("Namespace"); s != nil {
		s.Namespace = ns
	}
	return b
}

// JumpIf makes the last step jump to target (a later filter or End) when its
// filter returns result.
func (b *Builder) JumpIf(result Result, target string) *Builder {
	if s := b.last("JumpIf"); s != nil {
		if s.JumpIf == nil {
			s.JumpIf = map[string]string{}
		}
		s.JumpIf[string(result)] = target
	}
	return b
}

func (b *Builder) last(op string) *Step {
	if len(b.spec.Flow) == 0 {
		if b.err == nil {
			b.err = fmt.Errorf("pipeline %q: %s before any Filter", b.spec.Name, op)
		}
		return nil
	}
	return &b.spec.Flow[len(b.spec.Flow)-1]
}

// Spec returns the assembled spec.
func (b *Builder) Spec() (Spec, error) { return b.spec, b.err }

// Build builds the pipeline with New.
func (b *Builder) Build(reg *Registry, env Env) (*Pipeline, error) {
	if b.err != nil {
		return nil, b.err
	}
	return New(b.spec, reg, env)
}
