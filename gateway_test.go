package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// staticSpec is the spec of a test filter that answers with a fixed body.
type staticSpec struct {
	Body string `yaml:"body"`
	Code int    `yaml:"code"`
}

func (s *staticSpec) SetDefaults() { s.Code = 200 }

func (s *staticSpec) Validate() error {
	if s.Code < 100 || s.Code > 599 {
		return pipeline.FieldErr("code", fmt.Errorf("%d is not a status code", s.Code))
	}
	return nil
}

type static struct{ s *staticSpec }

func (f *static) Handle(c *pipeline.Context) pipeline.Result {
	c.Respond(f.s.Code, f.s.Body)
	return "done"
}

var staticKind = pipeline.Define("Static", []pipeline.Result{"done"},
	func(_ pipeline.Env, s *staticSpec) (pipeline.Filter, error) { return &static{s}, nil })

func newGateway(t *testing.T, opts ...sluice.Option) *sluice.Gateway {
	t.Helper()
	g, err := sluice.New(append([]sluice.Option{sluice.WithFilterKinds(staticKind)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return g
}

func apply(t *testing.T, g *sluice.Gateway, y string) {
	t.Helper()
	if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
		t.Fatal(err)
	}
}

const serverYAML = `
kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
rules:
  - paths:
    - path: /only-get
      methods: [GET]
      backend: p
    - pathPrefix: /p
      backend: p
    - pathPrefix: /missing
      backend: nothing-here
`

func staticPipeline(body string) string {
	return `
kind: Pipeline
name: p
filters:
  - name: static
    kind: Static
    body: ` + body + "\n"
}

func get(t *testing.T, h http.Handler, method, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

func TestRoutingStatuses(t *testing.T) {
	g := newGateway(t)
	apply(t, g, serverYAML)
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, h, "GET", "/p"); code != http.StatusServiceUnavailable {
		t.Errorf("before the pipeline exists: %d, want 503", code)
	}
	apply(t, g, staticPipeline("one"))
	tests := []struct {
		method, target string
		code           int
		body           string
	}{
		{"GET", "/p/x", 200, "one"},
		{"GET", "/only-get", 200, "one"},
		{"POST", "/only-get", 405, ""},
		{"GET", "/nowhere", 404, ""},
		{"GET", "/missing", 503, ""},
	}
	for _, tt := range tests {
		code, body := get(t, h, tt.method, tt.target)
		if code != tt.code || (tt.body != "" && body != tt.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.target, code, body, tt.code, tt.body)
		}
	}
	if _, err := g.Handler("nope"); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Handler of a missing server: %v", err)
	}
}

func TestApplyErrorsNameKindNameFieldLine(t *testing.T) {
	g := newGateway(t)
	apply(t, g, serverYAML+"---\n"+staticPipeline("good"))
	h, _ := g.Handler("server")

	tests := []struct {
		name, yaml, want string
		line             int
	}{
		{"unknown filter field", `kind: Pipeline
name: p
filters:
  - name: static
    kind: Static
    bodyy: bad
`, `field "filters[0].bodyy"`, 6},
		{"undeclared jumpIf", `kind: Pipeline
name: p
flow:
  - filter: static
    jumpIf: { nope: END }
filters:
  - name: static
    kind: Static
`, `field "flow[0].jumpIf.nope"`, 5},
		{"validate", `kind: Pipeline
name: p
filters:
  - name: static
    kind: Static
    code: 42
`, `field "filters[0].code"`, 6},
		{"unknown object field", `kind: HTTPServer
name: server
port: 0
hosts: []
`, `field "hosts"`, 4},
		{"unknown kind", `kind: Nope
name: x
`, `unknown object kind`, 1},
		{"unknown filter kind", `kind: Pipeline
name: p
filters:
  - name: x
    kind: Nope
`, `unknown filter kind`, 4},
		{"backward jump", `kind: Pipeline
name: p
flow:
  - filter: a
  - filter: b
    jumpIf: { done: a }
filters:
  - {name: a, kind: Static}
  - {name: b, kind: Static}
`, `not a later step`, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A good object in the same apply must not go live either.
			err := g.ApplyYAML(context.Background(), strings.NewReader("kind: Pipeline\nname: other\nfilters: [{name: s, kind: Static}]\n---\n"+tt.yaml))
			var oe *sluice.ObjectError
			if !errors.As(err, &oe) {
				t.Fatalf("got %v, want an ObjectError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			// Lines count from the start of the stream: 4 lines of the good object precede.
			if oe.Line != tt.line+4 {
				t.Errorf("line %d, want %d (%v)", oe.Line, tt.line+4, err)
			}
			if oe.Kind == "" || oe.Name == "" {
				t.Errorf("error lacks kind or name: %+v", oe)
			}
			if _, ok := g.Get("", "other"); ok {
				t.Error("a failed apply created another object")
			}
			if code, body := get(t, h, "GET", "/p"); code != 200 || body != "good" {
				t.Errorf("after a failed apply: %d %q, want the old config", code, body)
			}
		})
	}
}

func TestReloadUnderLoadDropsNothing(t *testing.T) {
	g := newGateway(t)
	apply(t, g, serverYAML+"---\n"+staticPipeline("v0"))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := serverAddr(t, g, "server")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	var failures, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + addr + "/p")
				total.Add(1)
				if err != nil {
					failures.Add(1)
					t.Log(err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "v") {
					failures.Add(1)
					t.Logf("%d %q", resp.StatusCode, b)
				}
			}
		}()
	}
	for i := 1; i <= 100; i++ {
		// Let requests complete between updates, so that every update
		// lands among requests in flight.
		for seen := total.Load(); total.Load() < seen+2; {
			time.Sleep(50 * time.Microsecond)
		}
		apply(t, g, staticPipeline(fmt.Sprintf("v%d", i)))
		if i%10 == 0 {
			// Updating the server itself hands the listener over.
			apply(t, g, strings.Replace(serverYAML, "pathPrefix: /p\n", fmt.Sprintf("pathPrefix: /p\n      methods: [GET, POST, PUT%d]\n", i), 1))
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during 100 updates", failures.Load(), total.Load())
	}
	if total.Load() < 200 {
		t.Errorf("only %d requests ran", total.Load())
	}
	if resp, err := client.Get("http://" + addr + "/p"); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "v100" {
			t.Errorf("final body %q", b)
		}
	}
}

func serverAddr(t *testing.T, g *sluice.Gateway, name string) string {
	t.Helper()
	for _, o := range g.Status().Objects {
		if o.Name == name {
			b := fmt.Sprint(o.Status)
			if i := strings.Index(b, "127.0.0.1:"); i >= 0 {
				return strings.Fields(b[i:])[0]
			}
		}
	}
	t.Fatalf("server %q has no address", name)
	return ""
}

func TestTwoGatewaysShareNothing(t *testing.T) {
	g1 := newGateway(t)
	g2 := newGateway(t)
	apply(t, g1, serverYAML+"---\n"+staticPipeline("one"))
	apply(t, g2, serverYAML+"---\n"+staticPipeline("two"))
	h1, _ := g1.Handler("server")
	h2, _ := g2.Handler("server")
	if _, b := get(t, h1, "GET", "/p"); b != "one" {
		t.Errorf("g1 %q", b)
	}
	if _, b := get(t, h2, "GET", "/p"); b != "two" {
		t.Errorf("g2 %q", b)
	}
	if err := g2.Delete(context.Background(), "Pipeline", "p"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, h2, "GET", "/p"); code != 503 {
		t.Errorf("g2 after delete: %d", code)
	}
	if _, b := get(t, h1, "GET", "/p"); b != "one" {
		t.Errorf("g1 after g2's delete: %q", b)
	}
	// A kind registered on one gateway is unknown to the other.
	g3, err := sluice.New()
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Shutdown(context.Background())
	if err := g3.ApplyYAML(context.Background(), strings.NewReader(staticPipeline("x"))); err == nil {
		t.Error("a gateway without the Static kind accepted it")
	}
}

func TestDeleteAndGetAndList(t *testing.T) {
	g := newGateway(t)
	apply(t, g, serverYAML+"---\n"+staticPipeline("x"))
	if s, ok := g.Get("Pipeline", "p"); !ok || s.Kind != "Pipeline" {
		t.Errorf("Get = %+v %v", s, ok)
	}
	if _, ok := g.Get("HTTPServer", "p"); ok {
		t.Error("Get with the wrong kind found the object")
	}
	if n := len(g.List("")); n != 2 {
		t.Errorf("List = %d objects", n)
	}
	if n := len(g.List("HTTPServer")); n != 1 {
		t.Errorf("List(HTTPServer) = %d", n)
	}
	if err := g.Delete(context.Background(), "Pipeline", "nope"); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Delete missing: %v", err)
	}
	// A name is unique across kinds.
	err := g.ApplyYAML(context.Background(), strings.NewReader("kind: Pipeline\nname: server\nfilters: []\n"))
	if !errors.Is(err, sluice.ErrExists) {
		t.Errorf("reusing a server's name for a pipeline: %v", err)
	}
}

func TestHTTPPipelineAlias(t *testing.T) {
	g := newGateway(t)
	apply(t, g, "kind: HTTPPipeline\nname: old\nfilters: [{name: s, kind: Static, body: hi}]\n")
	s, ok := g.Get("Pipeline", "old")
	if !ok || s.Kind != "Pipeline" {
		t.Fatalf("HTTPPipeline not stored as Pipeline: %+v %v", s, ok)
	}
}

func TestStartBindsAndShutdownDrains(t *testing.T) {
	g, err := sluice.New(sluice.WithFilterKinds(staticKind))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, g, serverYAML+"---\n"+staticPipeline("x"))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := serverAddr(t, g, "server")
	resp, err := http.Get("http://" + addr + "/p")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/p"); err == nil {
		t.Error("listener still open after Shutdown")
	}
	if err := g.Apply(context.Background()); !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("Apply after Shutdown: %v", err)
	}
}

func TestAddressInUseFailsTheApply(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	g := newGateway(t)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = g.ApplyYAML(context.Background(), strings.NewReader(fmt.Sprintf("kind: HTTPServer\nname: s\naddress: 127.0.0.1\nport: %d\n", port)))
	if err == nil {
		t.Fatal("apply on a busy port succeeded")
	}
	if _, ok := g.Get("", "s"); ok {
		t.Error("the server was created anyway")
	}
}
