package pipeline

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// PolicyKind builds one kind of resilience policy (CircuitBreaker, Retry,
// ...) from the `resilience:` section of a pipeline spec. Policies are
// shared by the filters of one pipeline that name them (a Proxy pool's
// circuitBreakerPolicy, say): the pipeline builds each policy once, before
// its filters, and hands them to the filters in Env.Policies.
//
// A built policy value may implement Inheritor-like `Inherit(prev any)
// error` to take over the state of the policy of the same name, kind and
// spec in the previous generation (a circuit breaker stays open across a
// reload that did not change it), and Closer.
type PolicyKind struct {
	Name        string
	Description string
	// DefaultSpec returns the policy's spec with its defaults.
	DefaultSpec func() any
	// Build makes the policy from its own fields (without name and kind).
	Build func(env Env, raw Raw) (any, error)
}

// Policies are the built policies of a pipeline, by name.
type Policies struct {
	byName map[string]policy
}

type policy struct {
	kind  string
	spec  string // the policy's YAML, to tell whether a reload changed it
	value any
}

// Get returns the policy called name and its kind.
func (p Policies) Get(name string) (value any, kind string, ok bool) {
	pol, ok := p.byName[name]
	return pol.value, pol.kind, ok
}

// Names returns the policy names, sorted.
func (p Policies) Names() []string {
	out := make([]string, 0, len(p.byName))
	for n := range p.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the policy called name as a T, or an error that says what
// is wrong (for a filter's Build: wrap it with the field that names it).
func Lookup[T any](p Policies, name, wantKind string) (T, error) {
	var zero T
	pol, ok := p.byName[name]
	if !ok {
		return zero, fmt.Errorf("%w %q (the pipeline's resilience section has %v)", ErrUnknownPolicy, name, p.Names())
	}
	if wantKind != "" && pol.kind != wantKind {
		return zero, fmt.Errorf("policy %q is a %s, not a %s", name, pol.kind, wantKind)
	}
	v, ok := pol.value.(T)
	if !ok {
		return zero, fmt.Errorf("policy %q is a %T", name, pol.value)
	}
	return v, nil
}

// buildPolicies builds the resilience section.
func buildPolicies(specs []PolicySpec, reg *Registry, env Env) (Policies, error) {
	ps := Policies{byName: make(map[string]policy, len(specs))}
	for i, s := range specs {
		field := "resilience[" + strconv.Itoa(i) + "]"
		if s.Name == "" {
			return ps, &FieldError{Field: field + ".name", Line: s.line, Err: errors.New("a policy needs a name")}
		}
		if _, dup := ps.byName[s.Name]; dup {
			return ps, &FieldError{Field: field + ".name", Line: s.line, Err: fmt.Errorf("%w: policy %q is defined twice", ErrDuplicateName, s.Name)}
		}
		kind, ok := reg.PolicyKind(s.Kind)
		if !ok {
			return ps, &FieldError{Field: field + ".kind", Line: s.line, Err: fmt.Errorf("policy %q: %w %q", s.Name, ErrUnknownPolicyKind, s.Kind)}
		}
		v, err := kind.Build(env, s.Spec)
		if err != nil {
			return ps, filterErr(field, "policy", s, err)
		}
		ps.byName[s.Name] = policy{kind: s.Kind, spec: string(s.Spec.YAML()), value: v}
	}
	return ps, nil
}

// inherit hands each policy of prev over to the policy of the same name,
// kind and spec in p.
func (p Policies) inherit(prev Policies) error {
	for name, pol := range p.byName {
		old, ok := prev.byName[name]
		if !ok || old.kind != pol.kind || old.spec != pol.spec {
			continue
		}
		if inh, ok := pol.value.(interface{ Inherit(prev any) error }); ok {
			if err := inh.Inherit(old.value); err != nil {
				return fmt.Errorf("policy %q: inherit: %w", name, err)
			}
		}
	}
	return nil
}

func (p Policies) close() []error {
	var errs []error
	for name, pol := range p.byName {
		if c, ok := pol.value.(Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("policy %q: %w", name, err))
			}
		}
	}
	return errs
}
