// Package headerops is the header manipulation that the RequestAdaptor and
// ResponseAdaptor filters share: delete, set and add header fields, in that
// order, as Easegress's header adaptor does.
//
// A Spec is plain data, decoded from YAML or filled in by Go code. Its
// Validate runs once when a filter is built and rejects names that are not
// RFC 9110 tokens, values that contain control characters (CR, LF, NUL: a
// header injection), and two keys of one map that name the same header in
// different case (which would make the outcome depend on map order). Apply
// then runs per request; it only reads the Spec, so one Spec may be applied
// by many goroutines at once as long as nobody changes it.
//
// The package also holds the name and value checks that other filters use
// for the headers in their own specs (IsToken, ValidValue, CheckNames,
// CheckMap), so that every built-in filter judges header names alike.
package headerops

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"

	"github.com/sluicegw/sluice/internal/yamlx"
	"github.com/sluicegw/sluice/pipeline"
)

// Spec changes the fields of one header: first every name in Del is
// removed, then each Set entry replaces all values of its header, then each
// Add entry appends a value. Names are case-insensitive. The zero Spec
// changes nothing.
type Spec struct {
	// Del lists the header names to remove. Nil removes nothing.
	Del []string `yaml:"del,omitempty"`
	// Set maps a header name to the single value it gets, replacing any
	// values it had. An empty value sets the header to "". Nil sets nothing.
	Set map[string]string `yaml:"set,omitempty"`
	// Add maps a header name to a value appended after the values it has.
	// Nil adds nothing.
	Add map[string]string `yaml:"add,omitempty"`
}

// IsZero reports whether s changes nothing.
func (s Spec) IsZero() bool { return len(s.Del) == 0 && len(s.Set) == 0 && len(s.Add) == 0 }

// Validate checks every name and value. Errors are *pipeline.FieldError
// values whose field is relative to the Spec ("set.X-Foo", "del[1]").
func (s *Spec) Validate() error {
	seen := make(map[string]bool, len(s.Del))
	for i, name := range s.Del {
		field := "del[" + strconv.Itoa(i) + "]"
		if !IsToken(name) {
			return pipeline.FieldErr(field, fmt.Errorf("%q is not a valid header name", name))
		}
		c := textproto.CanonicalMIMEHeaderKey(name)
		if seen[c] {
			return pipeline.FieldErr(field, fmt.Errorf("header %q is listed twice", c))
		}
		seen[c] = true
	}
	if err := CheckMap("set", s.Set); err != nil {
		return err
	}
	return CheckMap("add", s.Add)
}

// Apply changes h as s says: Del, then Set, then Add. h must not be nil
// unless s is zero.
func (s *Spec) Apply(h http.Header) {
	for _, name := range s.Del {
		h.Del(name)
	}
	for name, v := range s.Set {
		h.Set(name, v)
	}
	for name, v := range s.Add {
		h.Add(name, v)
	}
}

// Touches reports whether s deletes, sets or adds the header called name
// (compared case-insensitively).
func (s *Spec) Touches(name string) bool {
	c := textproto.CanonicalMIMEHeaderKey(name)
	same := func(n string) bool { return textproto.CanonicalMIMEHeaderKey(n) == c }
	if slices.ContainsFunc(s.Del, same) {
		return true
	}
	for n := range s.Set {
		if same(n) {
			return true
		}
	}
	for n := range s.Add {
		if same(n) {
			return true
		}
	}
	return false
}

// CheckNames checks that every key of m is a valid header name and that no
// two keys name the same header in different case. The error is a
// *pipeline.FieldError at field.<key>. Keys are checked in sorted order, so
// the error is the same on every run.
func CheckNames[V any](field string, m map[string]V) error {
	canon := make(map[string]string, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !IsToken(name) {
			return pipeline.FieldErr(yamlx.Join(field, name), fmt.Errorf("%q is not a valid header name", name))
		}
		c := textproto.CanonicalMIMEHeaderKey(name)
		if prev, dup := canon[c]; dup {
			return pipeline.FieldErr(yamlx.Join(field, name), fmt.Errorf("%q and %q name the same header", prev, name))
		}
		canon[c] = name
	}
	return nil
}

// CheckMap is CheckNames plus a check of every value with ValidValue.
func CheckMap(field string, m map[string]string) error {
	if err := CheckNames(field, m); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !ValidValue(m[name]) {
			return pipeline.FieldErr(yamlx.Join(field, name), errInvalidValue)
		}
	}
	return nil
}

// errInvalidValue does not quote the value: header values are often secrets.
var errInvalidValue = errors.New("header value contains a control character")

// IsToken reports whether s is an RFC 9110 token: the syntax of header
// field names and of request methods.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// ValidValue reports whether v may be sent as a header field value: no
// control characters other than horizontal tab (so no CR, LF or NUL).
func ValidValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
