// Package yamlx decodes YAML strictly and keeps positions.
//
// Every spec in Sluice is decoded through Decode: unknown keys are errors,
// type mismatches are errors, and each error is a *FieldError that names the
// field's path from the object root (for example "filters[1].headers") and
// its line in the YAML the user wrote. Spec validation errors that name a
// field are given the line of that field with Locate.
package yamlx

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrUnknownField is wrapped by the FieldError for a key that the target type
// does not have.
var ErrUnknownField = errors.New("unknown field")

// FieldError is an error in one field of a spec.
type FieldError struct {
	Field string // path from the spec root, e.g. "filters[1].headers"; "" for the whole spec
	Line  int    // 1-based line in the YAML source; 0 when unknown
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Prefix returns err with prefix prepended to the field path of the
// FieldError it carries; a plain error becomes a FieldError at prefix.
func Prefix(err error, prefix string) error {
	if err == nil || prefix == "" {
		return err
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		c := *fe
		c.Field = Join(prefix, fe.Field)
		return &c
	}
	return &FieldError{Field: prefix, Err: err}
}

// Join joins two field paths.
func Join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	typeErrLine         = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// Decode decodes node into v, which must be a non-nil pointer. Keys that v's
// type does not have are errors, so are values of the wrong type; the error
// is a *FieldError with the field path and line. Validation is separate:
// see Validate.
func Decode(node *yaml.Node, v any) error {
	if node == nil {
		return nil
	}
	n := content(node)
	c := checker{budget: maxNodes}
	if err := c.check(n, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if err := n.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg := te.Errors[0]
			if m := typeErrLine.FindStringSubmatch(msg); m != nil {
				line, _ := strconv.Atoi(m[1])
				return &FieldError{Field: PathAt(n, line), Line: line, Err: errors.New(m[2])}
			}
			return &FieldError{Line: n.Line, Err: errors.New(msg)}
		}
		return &FieldError{Line: n.Line, Err: err}
	}
	return nil
}

// Validate calls v's Validate method if it has one and places the error it
// returns at its field's line in node.
func Validate(node *yaml.Node, v any) error {
	val, ok := v.(interface{ Validate() error })
	if !ok {
		return nil
	}
	return Place(node, val.Validate())
}

// Place fills in the line of err's field from node. A plain error is placed
// at the node itself.
func Place(node *yaml.Node, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		if fe.Line > 0 || node == nil {
			return err
		}
		c := *fe
		c.Line = Locate(node, fe.Field)
		return &c
	}
	line := 0
	if node != nil {
		line = content(node).Line
	}
	return &FieldError{Line: line, Err: err}
}

func content(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return n
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

// maxNodes bounds the nodes a strict check visits, aliases expanded: a
// small document whose aliases nest ("billion laughs") is refused instead
// of taking exponential time.
const maxNodes = 1 << 20

// ErrTooComplex is returned for a document whose aliases expand past
// maxNodes nodes.
var ErrTooComplex = errors.New("the document expands to too many nodes through aliases")

type checker struct {
	budget int
}

// check walks n against t and reports the first unknown key.
func (c *checker) check(n *yaml.Node, t reflect.Type, path string) error {
	if c.budget--; c.budget < 0 {
		return &FieldError{Field: path, Line: n.Line, Err: ErrTooComplex}
	}
	n = content(n)
	if n == nil || t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
			return nil
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports the type mismatch
		}
		fields, inlineMap := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				// The keys a << merge brings in are the struct's keys too.
				merged := []*yaml.Node{val}
				if v := content(val); v != nil && v.Kind == yaml.SequenceNode {
					merged = v.Content
				}
				for _, m := range merged {
					if err := c.check(m, t, path); err != nil {
						return err
					}
				}
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				if inlineMap != nil {
					if err := c.check(val, inlineMap.Elem(), Join(path, k.Value)); err != nil {
						return err
					}
					continue
				}
				return &FieldError{Field: Join(path, k.Value), Line: k.Line, Err: ErrUnknownField}
			}
			if err := c.check(val, ft, Join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := c.check(n.Content[i+1], t.Elem(), Join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			if err := c.check(item, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

// structFields maps YAML keys to field types the way yaml.v3 does: the tag's
// name, or the lowercased field name; inline structs are flattened.
func structFields(t reflect.Type) (map[string]reflect.Type, reflect.Type) {
	fields := map[string]reflect.Type{}
	var inlineMap reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				sub, m := structFields(ft)
				for k, v := range sub {
					fields[k] = v
				}
				if m != nil {
					inlineMap = m
				}
			case reflect.Map:
				inlineMap = ft
			}
			continue
		}
		if f.PkgPath != "" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields, inlineMap
}

// Locate returns the line of the field at path ("a.b[2].c") in n, or the
// line of the deepest part of the path that exists.
func Locate(n *yaml.Node, path string) int {
	n = content(n)
	if n == nil {
		return 0
	}
	line := n.Line
	for _, part := range splitPath(path) {
		n = content(n)
		switch {
		case part.index >= 0:
			if n.Kind != yaml.SequenceNode || part.index >= len(n.Content) {
				return line
			}
			n = n.Content[part.index]
			line = n.Line
		default:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part.key {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		}
	}
	return line
}

type pathPart struct {
	key   string
	index int
}

func splitPath(path string) []pathPart {
	var parts []pathPart
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			parts = append(parts, pathPart{key: key, index: -1})
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil {
				break
			}
			parts = append(parts, pathPart{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return parts
}

// PathAt returns the path of the deepest field whose key or value is on
// line. It does not follow aliases: a node is found where it is written.
func PathAt(n *yaml.Node, line int) string {
	path, _ := pathAt(content(n), line, "")
	return path
}

func pathAt(n *yaml.Node, line int, path string) (string, bool) {
	if n == nil || n.Kind == yaml.AliasNode {
		return path, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := Join(path, k.Value)
			if deep, ok := pathAt(v, line, p); ok {
				return deep, true
			}
			if k.Line == line {
				return p, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if deep, ok := pathAt(c, line, p); ok {
				return deep, true
			}
		}
	case yaml.ScalarNode:
		return path, n.Line == line
	}
	return path, false
}

// Encode turns a Go value into a YAML node, the inverse of Decode.
func Encode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return &n, nil
}

// Without returns a copy of mapping node n without the given top-level keys.
func Without(n *yaml.Node, keys ...string) *yaml.Node {
	n = content(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return n
	}
	c := *n
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		skip := false
		for _, k := range keys {
			if n.Content[i].Value == k {
				skip = true
			}
		}
		if !skip {
			c.Content = append(c.Content, n.Content[i], n.Content[i+1])
		}
	}
	return &c
}

// String returns the scalar value of key in mapping node n and its line.
func String(n *yaml.Node, key string) (string, int, bool) {
	n = content(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return "", 0, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := content(n.Content[i+1])
			if v.Kind != yaml.ScalarNode {
				return "", n.Content[i].Line, false
			}
			return v.Value, n.Content[i].Line, true
		}
	}
	return "", 0, false
}
