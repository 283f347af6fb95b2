package sluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/yamlx"
	"github.com/sluicegw/sluice/pipeline"
)

// Spec is one object's configuration: its kind, its name and the kind's own
// fields. Specs come from YAML (ParseSpecs) or from Go values (NewSpec);
// both take the same strict decoding path when the object is built.
type Spec struct {
	Kind string
	Name string
	// Body holds the kind's own fields, everything but kind and name.
	Body pipeline.Raw
	// Line is the line of the document in the YAML it came from (0 for code).
	Line int
}

// NewSpec makes a Spec from a Go value holding the kind's fields (a spec
// struct with yaml tags, or a map).
func NewSpec(kind, name string, body any) Spec {
	var raw pipeline.Raw
	if body != nil {
		raw = pipeline.RawOf(body)
	}
	return Spec{Kind: kind, Name: name, Body: raw}
}

// ParseSpecs reads a stream of YAML (or JSON) documents, one object each,
// each with kind and name. Errors name the line.
func ParseSpecs(r io.Reader) ([]Spec, error) {
	dec := yaml.NewDecoder(r)
	var specs []Spec
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return specs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSpec, err)
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // empty document, e.g. a trailing ---
		}
		n := doc.Content[0]
		if n.Kind != yaml.MappingNode {
			return nil, &ObjectError{Line: n.Line, Err: fmt.Errorf("%w: an object must be a mapping with kind and name", ErrBadSpec)}
		}
		kind, kline, _ := yamlx.String(n, "kind")
		name, nline, _ := yamlx.String(n, "name")
		if anchored(n, "kind", "name") {
			return nil, &ObjectError{Kind: kind, Name: name, Line: n.Line, Err: fmt.Errorf("%w: kind and name must be plain values, without YAML anchors", ErrBadSpec)}
		}
		if kind == "" {
			return nil, &ObjectError{Name: name, Field: "kind", Line: max(kline, n.Line), Err: fmt.Errorf("%w: kind is required", ErrBadSpec)}
		}
		if name == "" {
			return nil, &ObjectError{Kind: kind, Field: "name", Line: max(nline, n.Line), Err: fmt.Errorf("%w: name is required", ErrBadSpec)}
		}
		specs = append(specs, Spec{Kind: kind, Name: name, Body: pipeline.RawNode(n).Without("kind", "name"), Line: n.Line})
	}
}

// anchored reports whether one of the keys of mapping n, or its value,
// carries a YAML anchor: the stored spec is rewritten without those keys,
// so an alias to them elsewhere would dangle.
func anchored(n *yaml.Node, keys ...string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		for _, k := range keys {
			if n.Content[i].Value == k && (n.Content[i].Anchor != "" || n.Content[i+1].Anchor != "") {
				return true
			}
		}
	}
	return false
}

// YAML returns the spec as one YAML document: kind, name, then the kind's
// fields.
func (s Spec) YAML() []byte {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode(s.node())
	_ = enc.Close()
	return b.Bytes()
}

// Value returns the spec as generic maps and slices (for JSON output).
func (s Spec) Value() map[string]any {
	out := map[string]any{}
	if m, ok := s.Body.Value().(map[string]any); ok {
		for k, v := range m {
			out[k] = v
		}
	}
	out["kind"] = s.Kind
	out["name"] = s.Name
	return out
}

func (s Spec) node() *yaml.Node {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, str("kind"), str(s.Kind), str("name"), str(s.Name))
	if n := s.Body.Node(); n != nil {
		for n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			n = n.Content[0]
		}
		if n.Kind == yaml.MappingNode {
			m.Content = append(m.Content, n.Content...)
		}
	}
	return m
}

// Decode decodes the kind's fields into v strictly.
func (s Spec) Decode(v any) error { return s.Body.Decode(v) }

// Category orders object kinds: objects start in ascending category order
// and stop in descending order, so that a controller starts after the
// objects it depends on and stops before them.
type Category int

const (
	// CategorySystem objects serve other objects: service registries,
	// certificate managers.
	CategorySystem Category = iota
	// CategoryPipeline objects handle requests: pipelines.
	CategoryPipeline
	// CategoryTrafficGate objects accept traffic: HTTP servers.
	CategoryTrafficGate
	// CategoryBusiness objects are controllers that use everything else
	// (status reporters, orchestrators).
	CategoryBusiness
)

func (c Category) String() string {
	switch c {
	case CategorySystem:
		return "System"
	case CategoryPipeline:
		return "Pipeline"
	case CategoryTrafficGate:
		return "TrafficGate"
	case CategoryBusiness:
		return "Business"
	}
	return fmt.Sprintf("Category(%d)", int(c))
}

// MarshalText writes the category's name.
func (c Category) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// ObjectKind builds one kind of object from its spec.
type ObjectKind struct {
	// Kind is the name in specs, e.g. "HTTPServer".
	Kind string
	// Aliases are other names accepted for the kind (older spellings).
	Aliases     []string
	Category    Category
	Description string
	// DefaultSpec returns the kind's spec with defaults, for documentation.
	DefaultSpec func() any
	// Build makes the object. It must not start goroutines or bind
	// sockets: the apply may still fail and the object be closed unused.
	Build func(env Env, spec Spec) (Object, error)
}

// WithDescription returns k with its description set.
func (k ObjectKind) WithDescription(d string) ObjectKind {
	k.Description = d
	return k
}

// Env is what an object kind's Build gets from its Gateway.
type Env struct {
	Logger *slog.Logger
	Clock  pipeline.Clock
	// Name is the object's name.
	Name string
	// Gateway is the gateway building the object. Build must not call its
	// Apply or Delete (they would deadlock); a controller's Run may call
	// any of its methods, also while it is being stopped.
	Gateway *Gateway
}

// Object is a running object.
//
// Lifecycle: Build → Inherit (if it implements Inheritor and a previous
// generation exists) → Listen (Gates, when the gateway is started) → the
// swap, after which the object is live → Serve (Gates) or Run (Controllers)
// → Close, once, after it has been replaced or deleted, or at Shutdown. If
// an apply fails, objects it built are closed without having gone live.
type Object interface {
	Close() error
}

// Inheritor is implemented by objects that take state over from the object
// of the same kind and name they replace. prev must keep working: it goes
// on serving until the swap.
type Inheritor interface {
	Inherit(prev Object) error
}

// Statuser is implemented by objects that report status; the value must
// marshal to JSON and YAML.
type Statuser interface {
	Status() any
}

// Controller is an object that runs off the request path: a status writer,
// a service registry, a certificate manager. Run is called in its own
// goroutine once the gateway has started and the object is live, and must
// return when ctx is cancelled (on update, delete or Shutdown). An update
// cancels the old controller's Run and waits for it to return before the new
// one starts.
type Controller interface {
	Object
	Run(ctx context.Context) error
}

// Gate is an object that accepts traffic (an HTTPServer). Listen binds its
// socket (or takes over its predecessor's) before the swap, so that an apply
// whose address is taken fails as a whole; Serve starts accepting after the
// swap. Shutdown drains it.
type Gate interface {
	Object
	Listen() error
	Serve()
	Shutdown(ctx context.Context) error
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// DefineObject declares an object kind whose spec is the Go type S, decoded
// strictly (after S's SetDefaults, then its Validate), the way
// pipeline.Define does for filters.
func DefineObject[S any](kind string, category Category, build func(env Env, spec *S) (Object, error)) ObjectKind {
	return ObjectKind{
		Kind:     kind,
		Category: category,
		DefaultSpec: func() any {
			s := new(S)
			if d, ok := any(s).(pipeline.Defaulter); ok {
				d.SetDefaults()
			}
			return s
		},
		Build: func(env Env, spec Spec) (Object, error) {
			s := new(S)
			if err := pipeline.DecodeSpec(spec.Body, s); err != nil {
				return nil, err
			}
			return build(env, s)
		},
	}
}
