package pipeline

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/yamlx"
)

// Raw is a spec that has not been decoded yet: the YAML a user wrote, with
// its line numbers, or a Go value encoded to YAML by RawOf. Kinds decode it
// strictly with Decode, so code and YAML take one path.
type Raw struct {
	node *yaml.Node
}

// RawOf encodes a Go spec value (a struct with yaml tags, a map, ...) as a
// Raw. It panics only if v cannot be represented in YAML at all (a func or a
// channel), which is a programming error.
func RawOf(v any) Raw {
	if r, ok := v.(Raw); ok {
		return r
	}
	n, err := yamlx.Encode(v)
	if err != nil {
		panic(fmt.Sprintf("pipeline.RawOf: %v", err))
	}
	return Raw{node: n}
}

// ParseRaw parses one YAML (or JSON) document.
func ParseRaw(b []byte) (Raw, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return Raw{}, err
	}
	if n.Kind == 0 {
		return Raw{}, nil
	}
	return Raw{node: &n}, nil
}

// RawNode wraps a YAML node. The node is not copied and must not be changed
// afterwards.
func RawNode(n *yaml.Node) Raw { return Raw{node: n} }

// Node returns the YAML node, or nil for an empty Raw.
func (r Raw) Node() *yaml.Node { return r.node }

// IsZero reports whether r holds nothing.
func (r Raw) IsZero() bool { return r.node == nil }

// Decode decodes r into v (a pointer) strictly: unknown keys and mistyped
// values are *FieldError values naming the field and its line.
func (r Raw) Decode(v any) error { return yamlx.Decode(r.node, v) }

// Line returns the line of the field at path ("a.b[1].c"), or the line of r.
func (r Raw) Line(path string) int { return yamlx.Locate(r.node, path) }

// Without returns r without the given top-level keys.
func (r Raw) Without(keys ...string) Raw {
	if r.node == nil {
		return r
	}
	return Raw{node: yamlx.Without(r.node, keys...)}
}

// String returns the top-level scalar field key, if r is a mapping that has it.
func (r Raw) String(key string) (string, bool) {
	v, _, ok := yamlx.String(r.node, key)
	return v, ok
}

// place gives err the line of the field it names.
func (r Raw) place(err error) error { return yamlx.Place(r.node, err) }

// YAML returns r as YAML text.
func (r Raw) YAML() []byte {
	if r.node == nil {
		return nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode(r.node)
	_ = enc.Close()
	return b.Bytes()
}

// Value decodes r into a generic value (maps, slices, scalars), for JSON output.
func (r Raw) Value() any {
	if r.node == nil {
		return nil
	}
	var v any
	if err := r.node.Decode(&v); err != nil {
		return nil
	}
	return v
}

// UnmarshalYAML keeps the node, so Raw can be a field of a spec struct.
func (r *Raw) UnmarshalYAML(n *yaml.Node) error {
	r.node = n
	return nil
}

// MarshalYAML writes the node back.
func (r Raw) MarshalYAML() (any, error) {
	if r.node == nil {
		return nil, nil
	}
	return r.node, nil
}
