package yamlx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type inner struct {
	Values []string `yaml:"values"`
	Regexp string   `yaml:"regexp"`
}

type spec struct {
	Port     int              `yaml:"port"`
	Timeout  time.Duration    `yaml:"timeout"`
	Headers  map[string]inner `yaml:"headers"`
	List     []inner          `yaml:"list"`
	Embedded `yaml:",inline"`
}

type Embedded struct {
	Extra string `yaml:"extra"`
}

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, src, field string
		line             int
		unknown          bool
	}{
		{"top", "port: 1\nbogus: 2\n", "bogus", 2, true},
		{"map value", "headers:\n  A:\n    values: [x]\n    regex: y\n", "headers.A.regex", 4, true},
		{"list item", "list:\n- values: [a]\n- valuez: [b]\n", "list[1].valuez", 3, true},
		{"type", "port: 1\ntimeout: soon\n", "timeout", 2, false},
		{"int type", "extra: x\nport: abc\n", "port", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s spec
			err := Decode(parse(t, tt.src), &s)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FieldError", err)
			}
			if fe.Field != tt.field || fe.Line != tt.line {
				t.Errorf("got field %q line %d, want %q line %d (%v)", fe.Field, fe.Line, tt.field, tt.line, err)
			}
			if errors.Is(err, ErrUnknownField) != tt.unknown {
				t.Errorf("unknown field = %v, want %v", !tt.unknown, tt.unknown)
			}
		})
	}
}

func TestDecodeOK(t *testing.T) {
	var s spec
	err := Decode(parse(t, "port: 8\ntimeout: 2s\nextra: e\nheaders: {A: {values: [x]}}\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Port != 8 || s.Timeout != 2*time.Second || s.Extra != "e" || s.Headers["A"].Values[0] != "x" {
		t.Errorf("decoded %+v", s)
	}
}

func TestLocateAndPlace(t *testing.T) {
	n := parse(t, "port: 1\nlist:\n- values: [a]\n- regexp: b\n")
	if got := Locate(n, "list[1].regexp"); got != 4 {
		t.Errorf("Locate = %d, want 4", got)
	}
	if got := Locate(n, "list[7].regexp"); got != 2 {
		t.Errorf("Locate of a missing index = %d, want the list's line 2", got)
	}
	err := Place(n, &FieldError{Field: "port", Err: errors.New("bad")})
	if !strings.Contains(err.Error(), "line 1: field \"port\": bad") {
		t.Errorf("Place = %v", err)
	}
	if got := PathAt(n, 4); got != "list[1].regexp" {
		t.Errorf("PathAt = %q", got)
	}
}

func TestPrefix(t *testing.T) {
	err := Prefix(&FieldError{Field: "a", Line: 3, Err: errors.New("x")}, "filters[0]")
	if err.Error() != `line 3: field "filters[0].a": x` {
		t.Errorf("got %v", err)
	}
	if Join("a", "[1]") != "a[1]" || Join("", "b") != "b" {
		t.Error("Join")
	}
}
