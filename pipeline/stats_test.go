package pipeline_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

func statsPipeline(t *testing.T, env pipeline.Env) *pipeline.Pipeline {
	t.Helper()
	raw, _ := pipeline.ParseRaw([]byte(`
flow:
  - {filter: one}
  - {filter: two, jumpIf: {a: END}}
filters:
  - {name: one, kind: Step}
  - {name: two, kind: Step, result: a, body: x}
`))
	var spec pipeline.Spec
	if err := raw.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	spec.Name = "counted"
	p, err := pipeline.New(spec, registry(t), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPipelineStats(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	p := statsPipeline(t, pipeline.Env{Clock: fake, Stats: true})
	for range 4 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("POST", "/t", strings.NewReader("12345")))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}
	st, ok := p.Stats()
	if !ok {
		t.Fatal("no stats")
	}
	if st.Pipeline.Total != 4 || st.Pipeline.Codes[200] != 4 || st.Pipeline.RequestSize.Total != 20 {
		t.Errorf("pipeline: %+v", st.Pipeline)
	}
	if len(st.Filters) != 2 || st.Filters[0].Name != "one" || st.Filters[0].Results["continue"] != 4 ||
		st.Filters[1].Results["a"] != 4 || st.Filters[1].Kind != "Step" {
		t.Errorf("filters: %+v", st.Filters)
	}
	if p.Status().Stats == nil {
		t.Error("Status without Stats")
	}

	// The next generation keeps counting.
	next := statsPipeline(t, pipeline.Env{Clock: fake, Stats: true})
	if err := next.Inherit(p); err != nil {
		t.Fatal(err)
	}
	next.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/t", nil))
	st, _ = next.Stats()
	if st.Pipeline.Total != 5 || st.Filters[1].Stats.Total != 5 {
		t.Errorf("after inherit: pipeline %d, filter %d", st.Pipeline.Total, st.Filters[1].Stats.Total)
	}

	off := statsPipeline(t, pipeline.Env{})
	if _, ok := off.Stats(); ok || off.Status().Stats != nil {
		t.Error("stats without Env.Stats")
	}
}

func TestExplainSteps(t *testing.T) {
	p := statsPipeline(t, pipeline.Env{})
	ex := &pipeline.Explain{Header: "X-Why"}
	ex.SetRoute("rules[0].paths[0]", "counted")
	r := pipeline.WithRequestInfo(httptest.NewRequest("GET", "/t", nil), &pipeline.RequestInfo{Explain: ex})
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, r)
	got := rec.Header().Get("X-Why")
	want := `route="rules[0].paths[0]" backend="counted"; filter="one" kind="Step" result=continue took=`
	if !strings.HasPrefix(got, want) || !strings.Contains(got, `; filter="two" kind="Step" result="a" took=`) {
		t.Errorf("explain header %q", got)
	}
	if steps := ex.Steps(); len(steps) != 2 || steps[1].Result != "a" {
		t.Errorf("steps %+v", steps)
	}
	// Without an Explain nothing is added.
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/t", nil))
	if rec.Header().Get("X-Why") != "" {
		t.Error("explained without asking")
	}
	var none *pipeline.Explain
	none.AddStep(pipeline.ExplainStep{})
	none.AddUpstream("x")
	if none.String() != "" {
		t.Error("nil Explain renders")
	}
}
