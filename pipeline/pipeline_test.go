package pipeline_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicegw/sluice/pipeline"
)

// stepSpec configures the test filter: it appends its name to the
// X-Trace header of the request and returns Result.
type stepSpec struct {
	Result string `yaml:"result"`
	Panic  bool   `yaml:"panic"`
	Body   string `yaml:"body"`
}

type stepFilter struct {
	name string
	s    *stepSpec
}

func (f *stepFilter) Handle(c *pipeline.Context) pipeline.Result {
	if f.s.Panic {
		panic("boom")
	}
	r := c.Request()
	r.Header.Add("X-Trace", f.name+"@"+c.Namespace())
	if f.s.Body != "" {
		c.Respond(http.StatusOK, f.s.Body+":"+strings.Join(r.Header.Values("X-Trace"), ","))
	}
	return pipeline.Result(f.s.Result)
}

var stepKind = pipeline.Define("Step", []pipeline.Result{"a", "b"},
	func(env pipeline.Env, s *stepSpec) (pipeline.Filter, error) {
		return &stepFilter{name: env.Name, s: s}, nil
	})

// liar returns a result it never declared.
var liarKind = pipeline.Define("Liar", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
	return pipeline.FilterFunc(func(*pipeline.Context) pipeline.Result { return "surprise" }), nil
})

func registry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg, err := pipeline.NewRegistry(stepKind, liarKind)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func build(t *testing.T, y string) (*pipeline.Pipeline, error) {
	t.Helper()
	raw, err := pipeline.ParseRaw([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var spec pipeline.Spec
	if err := raw.Decode(&spec); err != nil {
		return nil, err
	}
	spec.Name = "test"
	return pipeline.New(spec, registry(t), pipeline.Env{})
}

func mustBuild(t *testing.T, y string) *pipeline.Pipeline {
	t.Helper()
	p, err := build(t, y)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func serve(p http.Handler) (int, string) {
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	return rec.Code, rec.Body.String()
}

func TestFlow(t *testing.T) {
	tests := []struct {
		name, yaml, want string
		code             int
	}{
		{"declared order without flow", `
filters:
  - {name: one, kind: Step}
  - {name: two, kind: Step, body: end}
`, "end:one@PRIMARY,two@PRIMARY", 200},
		{"jump over a step", `
flow:
  - {filter: one, jumpIf: {a: three}}
  - {filter: two}
  - {filter: three}
filters:
  - {name: one, kind: Step, result: a}
  - {name: two, kind: Step}
  - {name: three, kind: Step, body: end}
`, "end:one@PRIMARY,three@PRIMARY", 200},
		{"jump to END", `
flow:
  - {filter: one, jumpIf: {a: END}}
  - {filter: two}
filters:
  - {name: one, kind: Step, result: a, body: stop}
  - {name: two, kind: Step, body: never}
`, "stop:one@PRIMARY", 200},
		{"a result without jumpIf ends the flow", `
filters:
  - {name: one, kind: Step, result: b, body: stop}
  - {name: two, kind: Step, body: never}
`, "stop:one@PRIMARY", 200},
		{"no response is an empty 200", `
filters:
  - {name: one, kind: Step}
`, "", 200},
		{"alias runs a filter twice", `
flow:
  - {filter: one}
  - {filter: one, alias: again}
  - {filter: end}
filters:
  - {name: one, kind: Step}
  - {name: end, kind: Step, body: end}
`, "end:one@PRIMARY,one@PRIMARY,end@PRIMARY", 200},
		{"undeclared result is a 500", `
filters:
  - {name: liar, kind: Liar}
  - {name: two, kind: Step, body: never}
`, "internal error\n", 500},
		{"panic is a 500", `
filters:
  - {name: p, kind: Step, panic: true}
`, "internal error\n", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustBuild(t, tt.yaml)
			code, body := serve(p)
			if code != tt.code || body != tt.want {
				t.Errorf("got %d %q, want %d %q", code, body, tt.code, tt.want)
			}
		})
	}
}

func TestFlowErrors(t *testing.T) {
	tests := []struct {
		name, yaml, field string
		is                error
	}{
		{"unknown kind", "filters: [{name: x, kind: Nope}]", "filters[0].kind", pipeline.ErrUnknownKind},
		{"duplicate filter", "filters: [{name: x, kind: Step}, {name: x, kind: Step}]", "filters[1].name", pipeline.ErrDuplicateName},
		{"unknown flow filter", "flow: [{filter: y}]\nfilters: [{name: x, kind: Step}]", "flow[0].filter", pipeline.ErrUnknownFilter},
		{"undeclared jumpIf", "flow: [{filter: x, jumpIf: {c: END}}]\nfilters: [{name: x, kind: Step}]", "flow[0].jumpIf.c", pipeline.ErrUndeclaredResult},
		{"backward jump", "flow: [{filter: x}, {filter: y, jumpIf: {a: x}}]\nfilters: [{name: x, kind: Step}, {name: y, kind: Step}]", "flow[1].jumpIf.a", pipeline.ErrBackwardJump},
		{"self jump", "flow: [{filter: x, jumpIf: {a: x}}]\nfilters: [{name: x, kind: Step}]", "flow[0].jumpIf.a", pipeline.ErrBackwardJump},
		{"unknown jump target", "flow: [{filter: x, jumpIf: {a: z}}]\nfilters: [{name: x, kind: Step}]", "flow[0].jumpIf.a", pipeline.ErrUnknownFilter},
		{"duplicate step", "flow: [{filter: x}, {filter: x}]\nfilters: [{name: x, kind: Step}]", "flow[1]", pipeline.ErrDuplicateName},
		{"unknown filter field", "filters: [{name: x, kind: Step, resultt: a}]", "filters[0].resultt", pipeline.ErrUnknownField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.yaml)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("field = %v, want %q", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), `pipeline "test": `) {
				t.Errorf("error %q does not name the pipeline", err)
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	p := mustBuild(t, `
flow:
  - {filter: one, namespace: side}
  - {filter: two}
filters:
  - {name: one, kind: Step, body: side}
  - {name: two, kind: Step}
`)
	c := pipeline.NewContext(httptest.NewRequest("GET", "/", nil))
	p.Run(c)
	if got := c.Namespaces(); len(got) != 2 || got[1] != "side" {
		t.Errorf("namespaces %v", got)
	}
	if c.ResponseIn("side") == nil {
		t.Error("the side namespace has no response")
	}
	if c.Response() != nil {
		t.Error("the primary namespace got the side response")
	}
	if got := c.RequestIn(pipeline.PrimaryNamespace).Header.Values("X-Trace"); len(got) != 1 || got[0] != "two@PRIMARY" {
		t.Errorf("primary trace %v", got)
	}
	c.Finish()
}

func TestContextValuesAndOnFinish(t *testing.T) {
	var ran atomic.Int32
	type key struct{}
	kind := pipeline.Define("Hook", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return pipeline.FilterFunc(func(c *pipeline.Context) pipeline.Result {
			c.SetValue(key{}, 1)
			c.SetValue(key{}, 2)
			v := c.Value(key{}).(int)
			c.OnFinish(func(*pipeline.Context) { ran.Add(int32(v)) })
			c.OnFinish(func(*pipeline.Context) { panic("hooks are isolated") })
			c.OnFinish(func(*pipeline.Context) { ran.Add(10) })
			return pipeline.Continue
		}), nil
	})
	reg, _ := pipeline.NewRegistry(kind)
	spec, _ := pipeline.NewBuilder("hooks").Filter("h", "Hook", nil).Spec()
	p, err := pipeline.New(spec, reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	serve(p)
	if ran.Load() != 12 {
		t.Errorf("hooks ran %d, want 12", ran.Load())
	}
}

type closing struct {
	closed    *atomic.Int32
	inherited *atomic.Int32
}

func (c closing) Handle(*pipeline.Context) pipeline.Result { return pipeline.Continue }
func (c closing) Close() error                             { c.closed.Add(1); return nil }
func (c closing) Inherit(pipeline.Filter) error            { c.inherited.Add(1); return nil }

func TestInheritAndClose(t *testing.T) {
	var closed, inherited atomic.Int32
	kind := pipeline.Define("C", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return closing{&closed, &inherited}, nil
	})
	reg, _ := pipeline.NewRegistry(kind)
	b := pipeline.NewBuilder("x").Filter("c", "C", nil)
	old, err := b.Build(reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := b.Build(reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Inherit(old); err != nil || inherited.Load() != 1 {
		t.Fatalf("inherit: %v %d", err, inherited.Load())
	}
	old.Close()
	old.Close()
	if closed.Load() != 1 {
		t.Errorf("closed %d times", closed.Load())
	}
	next.Close()
	// A failed build closes the filters it built.
	_, err = pipeline.NewBuilder("y").Filter("c", "C", nil).Filter("d", "Nope", nil).Build(reg, pipeline.Env{})
	if err == nil || closed.Load() != 3 {
		t.Errorf("failed build: %v, closed %d", err, closed.Load())
	}
}

func TestRegistry(t *testing.T) {
	if _, err := pipeline.NewRegistry(stepKind, stepKind); !errors.Is(err, pipeline.ErrDuplicateKind) {
		t.Errorf("duplicate kind: %v", err)
	}
	reg, _ := pipeline.NewRegistry(stepKind)
	if err := reg.Register(liarKind, stepKind); !errors.Is(err, pipeline.ErrDuplicateKind) {
		t.Errorf("duplicate register: %v", err)
	}
	if _, ok := reg.Kind("Liar"); ok {
		t.Error("a failed Register added a kind")
	}
	bad := pipeline.Kind{Name: "Bad", Results: []pipeline.Result{""}, Build: stepKind.Build}
	if err := reg.Register(bad); err == nil {
		t.Error("declaring the empty result was accepted")
	}
}

func TestWriteResponseStripsHopByHop(t *testing.T) {
	rec := httptest.NewRecorder()
	resp := pipeline.NewResponse(nil, 201, "text/plain", []byte("hi"))
	resp.Header.Set("Connection", "X-Secret")
	resp.Header.Set("X-Secret", "1")
	resp.Header.Set("Keep-Alive", "timeout=5")
	if err := pipeline.WriteResponse(rec, resp); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 201 || rec.Header().Get("X-Secret") != "" || rec.Header().Get("Keep-Alive") != "" {
		t.Errorf("got %d %v", rec.Code, rec.Header())
	}
	b, _ := io.ReadAll(rec.Body)
	if string(b) != "hi" {
		t.Errorf("body %q", b)
	}
}

func BenchmarkPipeline(b *testing.B) {
	reg, _ := pipeline.NewRegistry(pipeline.Define("Nop", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return pipeline.FilterFunc(func(*pipeline.Context) pipeline.Result { return pipeline.Continue }), nil
	}))
	p, err := pipeline.NewBuilder("bench").Filter("a", "Nop", nil).Filter("b", "Nop", nil).Filter("c", "Nop", nil).Build(reg, pipeline.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	r := httptest.NewRequest("GET", "/", nil)
	w := discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		p.ServeHTTP(w, r)
	}
}

type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func TestWriteResponseTrailers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := pipeline.NewResponse(r, 200, "text/plain", []byte("body"))
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		resp.Trailer = http.Header{"Grpc-Status": nil}
		resp.Body = io.NopCloser(&trailerReader{r: strings.NewReader("body"), set: func() { resp.Trailer.Set("Grpc-Status", "0") }})
		pipeline.WriteResponse(w, resp)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "body" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("body %q trailer %v", b, resp.Trailer)
	}
}

// trailerReader sets the trailer when the body reaches EOF, as a real
// upstream response does.
type trailerReader struct {
	r   io.Reader
	set func()
}

func (t *trailerReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		t.set()
	}
	return n, err
}

// counterPolicy is a test policy: a counter that a reload keeps when the
// policy's spec is unchanged.
type counterPolicy struct {
	n     *atomic.Int64
	limit int
}

func (c *counterPolicy) Inherit(prev any) error {
	c.n = prev.(*counterPolicy).n
	return nil
}

type counterSpec struct {
	Limit int `yaml:"limit"`
}

type usesPolicySpec struct {
	Policy string `yaml:"policy"`
}

func TestPolicies(t *testing.T) {
	reg := registry(t)
	err := reg.RegisterPolicies(pipeline.PolicyKind{Name: "Counter", Build: func(env pipeline.Env, raw pipeline.Raw) (any, error) {
		var s counterSpec
		if err := pipeline.DecodeSpec(raw, &s); err != nil {
			return nil, err
		}
		return &counterPolicy{n: new(atomic.Int64), limit: s.Limit}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	reg.Register(pipeline.Define("UsesPolicy", nil, func(env pipeline.Env, s *usesPolicySpec) (pipeline.Filter, error) {
		c, err := pipeline.Lookup[*counterPolicy](env.Policies, s.Policy, "Counter")
		if err != nil {
			return nil, pipeline.FieldErr("policy", err)
		}
		return pipeline.FilterFunc(func(ctx *pipeline.Context) pipeline.Result {
			c.n.Add(1)
			return pipeline.Continue
		}), nil
	}))
	buildP := func(y string) (*pipeline.Pipeline, error) {
		raw, _ := pipeline.ParseRaw([]byte(y))
		var spec pipeline.Spec
		if err := raw.Decode(&spec); err != nil {
			return nil, err
		}
		return pipeline.New(spec, reg, pipeline.Env{})
	}
	const y = "resilience:\n  - {name: c, kind: Counter, limit: 1}\nfilters:\n  - {name: u, kind: UsesPolicy, policy: c}\n"
	p1, err := buildP(y)
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	serve(p1)
	serve(p1)
	same, _ := buildP(y + "  - {name: v, kind: UsesPolicy, policy: c}\n")
	defer same.Close()
	same.Inherit(p1)
	serve(same)
	if c := count(t, same); c != 4 {
		t.Errorf("unchanged policy: count %d after inherit, want 4 (2 + 2)", c)
	}
	changed, _ := buildP(strings.Replace(y, "limit: 1", "limit: 2", 1))
	defer changed.Close()
	changed.Inherit(p1)
	serve(changed)
	if c := count(t, changed); c != 1 {
		t.Errorf("changed policy inherited: count %d, want 1", c)
	}

	for _, bad := range []struct{ y, want string }{
		{"filters:\n  - {name: u, kind: UsesPolicy, policy: nope}\n", `field "filters[0].policy"`},
		{"resilience:\n  - {name: c, kind: Nope}\nfilters: []\n", `field "resilience[0].kind"`},
		{"resilience:\n  - {name: c, kind: Counter, limt: 1}\nfilters: []\n", `field "resilience[0].limt"`},
		{"resilience:\n  - {name: c, kind: Counter}\n  - {name: c, kind: Counter}\nfilters: []\n", `field "resilience[1].name"`},
	} {
		if _, err := buildP(bad.y); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %s", bad.y, err, bad.want)
		}
	}
}

func count(t *testing.T, p *pipeline.Pipeline) int64 {
	t.Helper()
	c, err := pipeline.Lookup[*counterPolicy](p.Policies(), "c", "Counter")
	if err != nil {
		t.Fatal(err)
	}
	return c.n.Load()
}

func TestEndStep(t *testing.T) {
	p := mustBuild(t, `
flow:
  - {filter: one, jumpIf: {a: fallback}}
  - {filter: END}
  - {filter: fallback}
filters:
  - {name: one, kind: Step, body: ok}
  - {name: fallback, kind: Step, body: fallback}
`)
	if _, body := serve(p); body != "ok:one@PRIMARY" {
		t.Errorf("END did not end the flow: %q", body)
	}
	jumping := mustBuild(t, `
flow:
  - {filter: one, jumpIf: {a: fallback}}
  - {filter: END}
  - {filter: fallback}
filters:
  - {name: one, kind: Step, result: a}
  - {name: fallback, kind: Step, body: fallback}
`)
	if _, body := serve(jumping); body != "fallback:one@PRIMARY,fallback@PRIMARY" {
		t.Errorf("the jump past END: %q", body)
	}
	if _, err := build(t, "flow: [{filter: END, jumpIf: {a: END}}]\nfilters: []\n"); err == nil {
		t.Error("an END step with a jumpIf was accepted")
	}
	if _, err := build(t, "filters: [{name: END, kind: Step}]\n"); err == nil {
		t.Error("a filter called END was accepted")
	}
}
