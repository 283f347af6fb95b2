package yamlx

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Keys merged in with << are checked like the mapping's own.
func TestMergeKeysAreStrict(t *testing.T) {
	for _, src := range []string{
		"port: 1\n<<: {timout: 5s}\n",
		"port: 1\n<<: [{extra: a}, {timout: 5s}]\n",
	} {
		var s spec
		if err := Decode(parse(t, src), &s); !errors.Is(err, ErrUnknownField) {
			t.Errorf("%q: a misspelt key merged in with << was accepted: %v", src, err)
		}
	}
	var s spec
	if err := Decode(parse(t, "base: &b {timeout: 5s}\n"), &struct {
		Base spec `yaml:"base"`
	}{}); err != nil {
		t.Fatal(err)
	}
	if err := Decode(parse(t, "port: 1\n<<: {timeout: 5s}\n"), &s); err != nil || s.Timeout.String() != "5s" {
		t.Errorf("a good merge: %v %+v", err, s)
	}
}

// aliasBomb returns a document whose aliases nest levels deep, ten wide.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= levels; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// A document whose aliases expand exponentially is refused, not walked.
func TestAliasBombIsRefused(t *testing.T) {
	var target struct {
		Lists map[string][][]any `yaml:",inline"`
	}
	// The strict check refuses it (ErrTooComplex) or yaml.v3's own guard
	// does (excessive aliasing), whichever meets it first.
	err := Decode(parse(t, aliasBomb(7)), &target)
	if err == nil || !strings.Contains(err.Error(), "alias") {
		t.Errorf("got %v, want an error about aliases", err)
	}
}

// PathAt finds a node where it is written and does not walk into aliases.
func TestPathAtDoesNotFollowAliases(t *testing.T) {
	n := parse(t, aliasBomb(7)+"port: nope\n")
	if got := PathAt(n, 9); got != "port" {
		t.Errorf("PathAt = %q", got)
	}
	if got := PathAt(n, 1); got != "a0[0]" {
		t.Errorf("PathAt(1) = %q, want the anchor's own node", got)
	}
}

// The strict check stops at its node budget.
func TestCheckBudget(t *testing.T) {
	c := checker{budget: 3}
	var s spec
	err := c.check(parse(t, "list:\n- values: [a]\n- values: [b]\n- values: [c]\n"), reflect.TypeOf(&s), "")
	if !errors.Is(err, ErrTooComplex) {
		t.Errorf("got %v, want ErrTooComplex", err)
	}
}
