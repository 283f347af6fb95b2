package headerops

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/pipeline"
)

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		in   http.Header
		want http.Header
	}{
		{
			name: "zero spec changes nothing",
			in:   http.Header{"A": {"1"}},
			want: http.Header{"A": {"1"}},
		},
		{
			name: "del is case-insensitive",
			spec: Spec{Del: []string{"x-secret", "Missing"}},
			in:   http.Header{"X-Secret": {"s"}, "Keep": {"k"}},
			want: http.Header{"Keep": {"k"}},
		},
		{
			name: "set replaces every value",
			spec: Spec{Set: map[string]string{"x-a": "new", "x-b": ""}},
			in:   http.Header{"X-A": {"1", "2"}},
			want: http.Header{"X-A": {"new"}, "X-B": {""}},
		},
		{
			name: "add appends",
			spec: Spec{Add: map[string]string{"X-A": "3"}},
			in:   http.Header{"X-A": {"1", "2"}},
			want: http.Header{"X-A": {"1", "2", "3"}},
		},
		{
			name: "del then set then add",
			spec: Spec{
				Del: []string{"X-A"},
				Set: map[string]string{"X-A": "set"},
				Add: map[string]string{"X-A": "added"},
			},
			in:   http.Header{"X-A": {"old"}},
			want: http.Header{"X-A": {"set", "added"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.spec.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			h := tt.in.Clone()
			tt.spec.Apply(h)
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("got %v, want %v", h, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		spec      Spec
		wantField string // "" means valid
	}{
		{name: "valid", spec: Spec{Del: []string{"A"}, Set: map[string]string{"B": "v\tw"}, Add: map[string]string{"C": ""}}},
		{name: "bad del name", spec: Spec{Del: []string{"ok", "no space"}}, wantField: "del[1]"},
		{name: "empty del name", spec: Spec{Del: []string{""}}, wantField: "del[0]"},
		{name: "duplicate del", spec: Spec{Del: []string{"x-a", "X-A"}}, wantField: "del[1]"},
		{name: "bad set name", spec: Spec{Set: map[string]string{"a:b": "v"}}, wantField: "set.a:b"},
		{name: "same header twice in set", spec: Spec{Set: map[string]string{"X-A": "1", "x-a": "2"}}, wantField: "set.x-a"},
		{name: "CRLF in set value", spec: Spec{Set: map[string]string{"X-A": "v\r\nInjected: 1"}}, wantField: "set.X-A"},
		{name: "NUL in add value", spec: Spec{Add: map[string]string{"X-A": "v\x00"}}, wantField: "add.X-A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a FieldError", err)
			}
			if fe.Field != tt.wantField {
				t.Errorf("field = %q, want %q (error %v)", fe.Field, tt.wantField, err)
			}
			if strings.Contains(err.Error(), "Injected") {
				t.Errorf("error %q echoes the header value", err)
			}
		})
	}
}

func TestTouches(t *testing.T) {
	s := Spec{Del: []string{"a"}, Set: map[string]string{"b": ""}, Add: map[string]string{"C": ""}}
	for name, want := range map[string]bool{"A": true, "B": true, "c": true, "d": false} {
		if got := s.Touches(name); got != want {
			t.Errorf("Touches(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIsTokenAndValidValue(t *testing.T) {
	for s, want := range map[string]bool{
		"":                false,
		"GET":             true,
		"X-Custom_1.2":    true,
		"!#$%&'*+-.^_`|~": true,
		"a b":             false,
		"a:b":             false,
		"a\n":             false,
		"ä":               false,
	} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
	for v, want := range map[string]bool{
		"":          true,
		"a b\tc":    true,
		"ünïcode":   true,
		"a\r\nb: c": false,
		"a\x00":     false,
		"a\x7f":     false,
	} {
		if got := ValidValue(v); got != want {
			t.Errorf("ValidValue(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := Spec{Del: []string{"A"}, Set: map[string]string{"B": "b"}, Add: map[string]string{"C": "c"}}
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Spec
	if err := yaml.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: got %+v, want %+v\n%s", out, in, b)
	}
	if b, _ := yaml.Marshal(Spec{}); strings.TrimSpace(string(b)) != "{}" {
		t.Errorf("zero spec encodes as %q, want {}", b)
	}
}
