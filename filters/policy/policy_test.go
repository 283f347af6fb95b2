package policy_test

import (
	"strings"
	"testing"

	"github.com/sluicegw/sluice/filters/policy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

func build(t *testing.T, y string) *pipeline.Pipeline {
	t.Helper()
	reg, err := pipeline.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.RegisterPolicies(policy.Kinds()...); err != nil {
		t.Fatal(err)
	}
	raw, _ := pipeline.ParseRaw([]byte(y))
	var spec pipeline.Spec
	if err := raw.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(spec, reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

const spec = `
resilience:
  - name: cb
    kind: CircuitBreaker
    slidingWindowSize: 4
    minimumNumberOfCalls: 4
    failureRateThreshold: 50
  - name: retry
    kind: Retry
    maxAttempts: 2
filters: []
`

func TestBreakerStateSurvivesAnUnchangedReload(t *testing.T) {
	old := build(t, spec)
	cb, err := pipeline.Lookup[*policy.Breaker](old.Policies(), "cb", policy.KindCircuitBreaker)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		p, ok := cb.Get().Acquire()
		if !ok {
			t.Fatal("closed breaker refused a call")
		}
		p.Done(true)
	}
	if cb.Get().State() != resilience.Open {
		t.Fatalf("breaker %v after 4 failures", cb.Get().State())
	}

	same := build(t, spec)
	if err := same.Inherit(old); err != nil {
		t.Fatal(err)
	}
	next, _ := pipeline.Lookup[*policy.Breaker](same.Policies(), "cb", "")
	if next.Get().State() != resilience.Open {
		t.Error("an unchanged reload closed the open breaker")
	}

	changed := build(t, strings.Replace(spec, "failureRateThreshold: 50", "failureRateThreshold: 60", 1))
	if err := changed.Inherit(old); err != nil {
		t.Fatal(err)
	}
	fresh, _ := pipeline.Lookup[*policy.Breaker](changed.Policies(), "cb", "")
	if fresh.Get().State() != resilience.Closed {
		t.Error("a changed policy kept the old state")
	}
}

func TestPolicySpecErrors(t *testing.T) {
	reg, _ := pipeline.NewRegistry()
	reg.RegisterPolicies(policy.Kinds()...)
	raw, _ := pipeline.ParseRaw([]byte("resilience:\n  - name: cb\n    kind: CircuitBreaker\n    failureRateThreshold: 500\nfilters: []\n"))
	var s pipeline.Spec
	if err := raw.Decode(&s); err != nil {
		t.Fatal(err)
	}
	_, err := pipeline.New(s, reg, pipeline.Env{})
	if err == nil || !strings.Contains(err.Error(), `line 4: field "resilience[0].failureRateThreshold"`) {
		t.Errorf("got %v", err)
	}
}
