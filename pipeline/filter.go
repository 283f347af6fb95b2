package pipeline

import (
	"fmt"
	"slices"

	"github.com/sluicegw/sluice/internal/yamlx"
)

// Result is what a filter returns from Handle. The empty Result means
// "continue with the next step"; any other value must be declared in the
// filter's Kind.Results and may be mapped to a later step with jumpIf. A
// result without a jumpIf entry ends the flow.
type Result string

// Continue is the empty Result: go on to the next step.
const Continue Result = ""

// End is the jumpIf target that ends the flow.
const End = "END"

// Filter handles one step of a pipeline.
//
// Lifecycle: a Kind's Build makes a Filter from its decoded, validated spec
// (construct → decode → validate → build). The pipeline then calls Inherit
// on the new filter with the filter of the same name and kind from the
// previous generation, if both exist and the new one implements Inheritor;
// the new generation is swapped in atomically and the old one is closed with
// Close once its in-flight requests have finished.
//
// Concurrency: Handle is called from many goroutines at once, one per
// request, and must not keep the Context after it returns (use OnFinish).
// Inherit and Close are never called concurrently with each other, but
// Close may run while the new generation's filters serve requests.
type Filter interface {
	Handle(*Context) Result
}

// Inheritor is implemented by filters that take over state (counters, health,
// connection pools) from the filter they replace. Inherit runs before the new
// generation is published and must leave prev working: prev keeps serving
// until the swap, and is closed after it.
type Inheritor interface {
	Inherit(prev Filter) error
}

// Closer is implemented by filters that hold resources. Close runs once, after
// the filter's pipeline has been replaced or deleted and its in-flight
// requests have finished (or the gateway's drain timeout passed).
type Closer interface {
	Close() error
}

// Statuser is implemented by filters that report runtime status; the value
// must marshal to JSON and YAML.
type Statuser interface {
	Status() any
}

// Kind describes one kind of filter: its name in specs (e.g. "Proxy"), the
// results it may return, and how to build it from its spec.
type Kind struct {
	Name        string
	Description string
	// Results lists every non-empty Result the filter may return. Flow
	// validation rejects a jumpIf on any other result, and the engine
	// treats an undeclared result at run time as a bug (500, logged).
	Results []Result
	// DefaultSpec returns a spec with defaults filled in, for documentation
	// and the admin API's kind listing. Optional.
	DefaultSpec func() any
	// Build makes a filter from its spec. raw holds the filter's own fields
	// (without name and kind); decode them with raw.Decode.
	Build func(env Env, raw Raw) (Filter, error)
}

// Declares reports whether r is one of k's declared results.
func (k Kind) Declares(r Result) bool { return slices.Contains(k.Results, r) }

// WithDescription returns k with its description set.
func (k Kind) WithDescription(d string) Kind {
	k.Description = d
	return k
}

// Defaulter is implemented by spec types that fill in their defaults. Define
// calls SetDefaults on a fresh spec before decoding, so YAML overrides them.
type Defaulter interface {
	SetDefaults()
}

// Validator is implemented by spec types that check themselves after
// decoding. Return a *FieldError (see FieldErr) to name the bad field; its
// line is filled in from the YAML.
type Validator interface {
	Validate() error
}

// Define declares a filter kind whose spec is the Go type S. Building such a
// filter decodes its YAML strictly into a new S (after S's SetDefaults, if it
// has one), runs S's Validate, if it has one, and passes the result to build.
//
//	var Kind = pipeline.Define("HeaderCounter", []pipeline.Result{"invalidHeader"},
//		func(env pipeline.Env, s *Spec) (pipeline.Filter, error) { return &Counter{spec: s}, nil })
func Define[S any](name string, results []Result, build func(env Env, spec *S) (Filter, error)) Kind {
	return Kind{
		Name:    name,
		Results: results,
		DefaultSpec: func() any {
			s := new(S)
			if d, ok := any(s).(Defaulter); ok {
				d.SetDefaults()
			}
			return s
		},
		Build: func(env Env, raw Raw) (Filter, error) {
			s := new(S)
			if err := DecodeSpec(raw, s); err != nil {
				return nil, err
			}
			f, err := build(env, s)
			if err != nil {
				return nil, raw.place(err)
			}
			if f == nil {
				return nil, fmt.Errorf("kind %q built a nil filter", name)
			}
			return f, nil
		},
	}
}

// DecodeSpec fills s from raw the way Define does: SetDefaults, strict decode,
// Validate. Errors are *FieldError values with the field's line.
func DecodeSpec[S any](raw Raw, s *S) error {
	if d, ok := any(s).(Defaulter); ok {
		d.SetDefaults()
	}
	if err := raw.Decode(s); err != nil {
		return err
	}
	return yamlx.Validate(raw.node, s)
}

// FilterFunc adapts a function to the Filter interface.
type FilterFunc func(*Context) Result

// Handle calls f.
func (f FilterFunc) Handle(c *Context) Result { return f(c) }
