package pipeline

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Spec is a pipeline's configuration: its filters and the flow through them.
// In YAML it is the body of a `kind: Pipeline` object:
//
//	flow:
//	  - filter: validator
//	    jumpIf: { invalid: END }
//	  - filter: proxy
//	filters:
//	  - name: validator
//	    kind: Validator
//	    headers: { Content-Type: { values: [application/json] } }
//	  - name: proxy
//	    kind: Proxy
//	    pools: [ { servers: [ { url: "http://127.0.0.1:9095" } ] } ]
type Spec struct {
	// Name is the pipeline's name; the object's name when built by a Gateway.
	Name string `yaml:"-"`
	// Flow lists the steps in order. Empty means every filter once, in the
	// order of Filters.
	Flow []Step `yaml:"flow,omitempty"`
	// Filters defines the filters the flow refers to.
	Filters []FilterSpec `yaml:"filters"`
	// Resilience defines named policies (CircuitBreaker, Retry, ...) that
	// filters refer to by name, e.g. a Proxy pool's circuitBreakerPolicy.
	Resilience []PolicySpec `yaml:"resilience,omitempty"`
}

// PolicySpec is one policy's definition: name, kind and the kind's own
// fields inline, like a filter's.
type PolicySpec = FilterSpec

// Step is one step of a flow.
type Step struct {
	// Filter names the filter this step runs.
	Filter string `yaml:"filter"`
	// Alias names the step when one filter runs in several steps; jumpIf
	// targets name steps by alias, or by filter name when there is none.
	Alias string `yaml:"alias,omitempty"`
	// Namespace selects the request/response pair the filter works on;
	// empty is the primary namespace (the client's request and response).
	Namespace string `yaml:"namespace,omitempty"`
	// JumpIf maps a result of the filter to the step to go to next: a later
	// step's name or END. A result not listed here ends the flow.
	JumpIf map[string]string `yaml:"jumpIf,omitempty"`
}

// FilterSpec is one filter's definition: name, kind and the kind's own fields
// inline, as in Easegress.
type FilterSpec struct {
	Name string
	Kind string
	// Spec holds the kind's own fields (everything but name and kind).
	Spec Raw
	line int
}

// UnmarshalYAML splits name and kind from the kind's own fields.
func (f *FilterSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a filter must be a mapping with name and kind", n.Line)
	}
	r := RawNode(n)
	f.Name, _ = r.String("name")
	f.Kind, _ = r.String("kind")
	f.Spec = r.Without("name", "kind")
	f.line = n.Line
	return nil
}

// MarshalYAML writes name, kind and the kind's fields as one mapping.
func (f FilterSpec) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	m.Content = append(m.Content, str("name"), str(f.Name), str("kind"), str(f.Kind))
	if n := f.Spec.Node(); n != nil {
		for n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			n = n.Content[0]
		}
		if n.Kind == yaml.MappingNode {
			m.Content = append(m.Content, n.Content...)
		}
	}
	return m, nil
}
