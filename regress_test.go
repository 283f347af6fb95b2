package sluice_test

// Regression tests: each one reproduces a defect found in review, fixed
// since.

import (
	"bytes"
	"context"
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

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

// blockFilter signals entered and then blocks until release is closed,
// ignoring the request's context (a filter stuck in a slow library call).
type blockFilter struct {
	entered chan struct{}
	release chan struct{}
	once    *sync.Once
}

func (f blockFilter) Handle(c *pipeline.Context) pipeline.Result {
	f.once.Do(func() { close(f.entered) })
	<-f.release
	c.Respond(200, "late")
	return pipeline.Continue
}

// Gateway.Shutdown(ctx) must return once ctx is done. With a request stuck
// in a pipeline it never returns: gateway.go:639 calls e.obj.Close() after
// the bounded Shutdown(ctx), and pipelineObject.Close is Pipeline.Close =
// Shutdown(context.Background()) (pipeline.go), which waits for the stuck
// request without limit — while holding g.mu.
func TestShutdownHonoursContextWithStuckRequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	once := &sync.Once{}
	kind := pipeline.Define("Block", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return blockFilter{entered: entered, release: release, once: once}, nil
	})
	g, err := sluice.New(sluice.WithFilterKinds(kind), sluice.WithDrainTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, g, serverYAML+"---\nkind: Pipeline\nname: p\nfilters: [{name: b, kind: Block}]\n")
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/p", nil))
	}()
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- g.Shutdown(ctx) }()
	select {
	case err := <-shut:
		t.Logf("Shutdown returned after %v: %v", time.Since(start), err)
	case <-time.After(3 * time.Second):
		t.Errorf("Gateway.Shutdown with a 200ms context has not returned after 3s (a request is stuck in a pipeline)")
		// Is the gateway lock held? Status takes g.mu.
		st := make(chan struct{})
		go func() { g.Status(); close(st) }()
		select {
		case <-st:
		case <-time.After(500 * time.Millisecond):
			t.Errorf("…and it holds the gateway lock: Status() blocks too")
		}
		close(release)
		<-shut
		<-st
		<-reqDone
		return
	}
	close(release)
	<-reqDone
}

// A replaced server whose address changed, or a deleted server, is closed in
// a background goroutine (gateway.go closeObject), so its listening socket
// is still open when Delete/Apply returns. Re-creating a server on the same
// port right after deleting it (or moving it back to its old port) fails
// with "address already in use".
func TestDeleteThenRecreateSamePort(t *testing.T) {
	g := newGateway(t)
	apply(t, g, staticPipeline("x"))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := fmt.Sprintf("kind: HTTPServer\nname: s\naddress: 127.0.0.1\nport: %d\nrules: [{paths: [{pathPrefix: /, backend: p}]}]\n", port)
	failures := 0
	const rounds = 20
	for i := 0; i < rounds; i++ {
		if err := g.ApplyYAML(context.Background(), strings.NewReader(srv)); err != nil {
			failures++
			t.Logf("round %d: create: %v", i, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err := g.Delete(context.Background(), "HTTPServer", "s"); err != nil {
			t.Fatal(err)
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d re-creations of a just-deleted server on the same port failed", failures, rounds)
	}
}

// Start binds gates one by one; when one fails it shuts the ones it opened
// (gateway.go:425-430) but leaves them holding their closed listener, so a
// second Start "succeeds" (gate Listen is a no-op when s.l != nil,
// gate/server.go:146) and Serve runs on a closed socket: the server is not
// listening although Start returned nil.
func TestStartRetryAfterFailureListens(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	g := newGateway(t)
	apply(t, g, staticPipeline("x")+fmt.Sprintf(`---
kind: HTTPServer
name: a
address: 127.0.0.1
port: %d
rules: [{paths: [{pathPrefix: /, backend: p}]}]
---
kind: HTTPServer
name: b
address: 127.0.0.1
port: %d
rules: [{paths: [{pathPrefix: /, backend: p}]}]
`, freePort, busy.Addr().(*net.TCPAddr).Port))
	if err := g.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded on a busy port")
	}
	busy.Close() // the operator frees the port and retries
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", freePort))
	if err != nil {
		t.Fatalf("server a is not listening after a successful Start: %v", err)
	}
	resp.Body.Close()
}

// The gateway follows the store with one Watch (gateway.go:442-448). When
// the watch falls behind the store's bounded history the store closes the
// channel ("List and Watch again", store.go:26-29) but follow just returns
// (gateway.go:542-554): from then on the gateway silently ignores every
// change other writers commit.
func TestStoreFollowResyncsAfterCompaction(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := sluice.ObjectKind{
		Kind:     "Slow",
		Category: sluice.CategoryBusiness,
		Build: func(sluice.Env, sluice.Spec) (sluice.Object, error) {
			once.Do(func() { close(entered); <-release })
			return nopObject{}, nil
		},
	}
	st := sluice.NewMemoryStore()
	defer st.Close()
	g := newGateway(t, sluice.WithStore(st), sluice.WithObjectKinds(slow))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Another writer (a cluster peer) commits; the gateway's follow builds
	// it, slowly.
	if _, err := st.Commit(ctx, sluice.Op{Kind: "Slow", Name: "slow", Spec: []byte("kind: Slow\nname: slow\n")}); err != nil {
		t.Fatal(err)
	}
	<-entered
	// One more change: the store's watch goroutine takes it as its next
	// batch and blocks handing it to the busy follow loop.
	if _, err := st.Commit(ctx, sluice.Op{Kind: "Pipeline", Name: "first", Spec: []byte("kind: Pipeline\nname: first\nfilters: []\n")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 4200; i++ {
		name := fmt.Sprintf("p%d", i)
		if _, err := st.Commit(ctx, sluice.Op{Kind: "Pipeline", Name: name, Spec: []byte("kind: Pipeline\nname: " + name + "\nfilters: []\n")}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	time.Sleep(200 * time.Millisecond)
	if _, err := st.Commit(ctx, sluice.Op{Kind: "Pipeline", Name: "late", Spec: []byte("kind: Pipeline\nname: late\nfilters: []\n")}); err != nil {
		t.Fatal(err)
	}
	// Catching up builds some 4200 pipelines: generous on a busy machine
	// under -race; it returns as soon as the object is there.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := g.Get("Pipeline", "late"); ok {
			t.Logf("late applied; gateway has %d objects at revision %d", len(g.List("")), g.Status().Revision)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, rev, _ := st.List(ctx)
	t.Errorf("the gateway stopped following the store: object committed at revision %d never applied (gateway at revision %d, %d objects)", rev, g.Status().Revision, len(g.List("")))
}

type nopObject struct{}

func (nopObject) Close() error { return nil }

// A spec that Apply accepts is stored in a form that cannot be read back:
// Spec.YAML (object.go) re-encodes the body without the kind/name nodes, so
// an alias to an anchor defined on name (or kind) dangles. The store then
// holds invalid YAML; a gateway (re)starting from that store fails in New,
// and followers fail to apply the change.
func TestAnchorOnNameIsRefused(t *testing.T) {
	st := sluice.NewMemoryStore()
	defer st.Close()
	g1 := newGateway(t, sluice.WithStore(st))
	err := g1.ApplyYAML(context.Background(), strings.NewReader("kind: Pipeline\nname: &n api\nfilters:\n  - name: s\n    kind: Static\n    body: *n\n"))
	if err == nil || !strings.Contains(err.Error(), "without YAML anchors") {
		t.Fatalf("an anchor on name was accepted: %v", err)
	}
	// Anchors inside the body are fine, and what is stored reads back.
	apply(t, g1, "kind: Pipeline\nname: api\nfilters:\n  - name: s\n    kind: Static\n    body: &b hi\n  - name: t\n    kind: Static\n    body: *b\n")
	g2, err := sluice.New(sluice.WithFilterKinds(staticKind), sluice.WithStore(st))
	if err != nil {
		t.Fatalf("a gateway cannot start from the store the first one wrote: %v", err)
	}
	g2.Shutdown(context.Background())
}

// guardFilter records Handle calls that arrive after Close.
type guardFilter struct {
	closed *atomic.Bool
	late   *atomic.Int64
}

func (f guardFilter) Handle(c *pipeline.Context) pipeline.Result {
	if f.closed.Load() {
		f.late.Add(1)
	}
	return pipeline.Continue
}

func (f guardFilter) Close() error { f.closed.Store(true); return nil }

// The route's pipelineSlot loads the pipeline (kinds.go:96) before
// Pipeline.ServeHTTP counts the request in flight (pipeline.go ServeHTTP's
// first line). A reload in between sees inflight == 0, closes the old
// filters at once, and the request then runs on closed filters — the
// Filter/Closer contract says Close runs after in-flight requests finish.
func TestNoRequestRunsOnClosedFilterDuringReload(t *testing.T) {
	var late atomic.Int64
	kind := pipeline.Define("Guard", nil, func(_ pipeline.Env, _ *struct {
		V int `yaml:"v"`
	}) (pipeline.Filter, error) {
		return guardFilter{closed: new(atomic.Bool), late: &late}, nil
	})
	g := newGateway(t, sluice.WithFilterKinds(kind))
	spec := func(v int) string {
		return fmt.Sprintf("kind: Pipeline\nname: p\nfilters: [{name: g, kind: Guard, v: %d}]\n", v)
	}
	apply(t, g, serverYAML+"---\n"+spec(0))
	h, _ := g.Handler("server")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var total atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", "/p", nil)
			for {
				select {
				case <-stop:
					return
				default:
				}
				h.ServeHTTP(discardWriter{h: http.Header{}}, req)
				total.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	for i := 1; time.Now().Before(deadline) && late.Load() == 0; i++ {
		apply(t, g, spec(i))
	}
	close(stop)
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Errorf("%d of %d requests ran a filter after its pipeline closed it", n, total.Load())
	}
}

type discardWriter struct{ h http.Header }

func (w discardWriter) Header() http.Header         { return w.h }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}

// An alias bomb in a filter's fields (kept as a raw node, never decoded by
// the Pipeline spec) plus one type error elsewhere: yamlx.Decode turns the
// yaml.TypeError into a FieldError with PathAt (internal/yamlx/yamlx.go),
// which walks the whole document following every alias — exponential time.
// A ~1 KB body to the admin API keeps a CPU busy (and g.mu held).
func TestAliasBombInApplyError(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("kind: Pipeline\nname: bomb\nfilters:\n  - name: x\n    kind: Static\n")
	b.WriteString("    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	const depth = 9 // hours of work for a walker that follows aliases
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "    a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("flow: oops\n") // a type error, reported through PathAt
	t.Logf("spec is %d bytes", b.Len())
	g := newGateway(t)
	if err := g.ApplyYAML(context.Background(), &b); err == nil {
		t.Fatal("the bad spec was accepted")
	}
}

var _ io.Writer = discardWriter{}

// End to end through the Proxy filter: an upstream that fails in the middle
// of a chunked body. pipeline.ServeHTTP logs WriteResponse's error at debug
// level and returns normally, so net/http ends the chunked body cleanly and
// the client cannot tell the response was truncated.
func TestProxyTruncatedUpstreamIsVisible(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first half;")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the upstream connection drops
	}))
	defer backend.Close()
	g := newGateway(t)
	apply(t, g, serverYAML+"---\nkind: Pipeline\nname: p\nfilters:\n  - name: proxy\n    kind: Proxy\n    pools: [{servers: [{url: "+backend.URL+"}]}]\n")
	h, _ := g.Handler("server")
	front := httptest.NewServer(h)
	defer front.Close()
	resp, err := http.Get(front.URL + "/p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("upstream died mid-body; client got %d %q and no error", resp.StatusCode, b)
	}
}

// End to end through the Proxy filter: the backend receives the path with
// its dot segments, after the router matched it against the un-normalised
// path (DESIGN §4: "the backend sees exactly the path that was authorised").
func TestProxyDoesNotForwardDotSegments(t *testing.T) {
	paths := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.RequestURI
	}))
	defer backend.Close()
	g := newGateway(t)
	apply(t, g, `kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
rules:
  - paths:
    - path: /admin
      backend: deny
    - pathPrefix: /public/
      backend: p
---
kind: Pipeline
name: deny
filters: [{name: s, kind: Static, code: 403, body: denied}]
---
kind: Pipeline
name: p
filters:
  - name: proxy
    kind: Proxy
    pools: [{servers: [{url: `+backend.URL+`}]}]
`)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", serverAddr(t, g, "server"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /public/%%2e%%2e/admin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	select {
	case p := <-paths:
		t.Errorf("GET /public/%%2e%%2e/admin was routed by the /public/ prefix and the backend received %q (client got %q)", p, strings.SplitN(string(b), "\r\n", 2)[0])
	default:
	}
}

// follow (gateway.go applyEvent) skips an event only if the object exists
// locally with a revision >= the event's. The gateway's own put of A comes
// back from the store's watch after its own Delete of A already removed it,
// so applyEvent finds no A and builds it again from the stale put: a deleted
// object is resurrected (built, published, its port bound, its controller
// run) until the delete event arrives.
func TestOwnDeletedObjectStaysDeleted(t *testing.T) {
	var builds atomic.Int64
	counted := sluice.DefineObject("Counted", sluice.CategoryBusiness, func(_ sluice.Env, _ *struct {
		V int `yaml:"v"`
	}) (sluice.Object, error) {
		builds.Add(1)
		return nopObject{}, nil
	})
	g := newGateway(t, sluice.WithObjectKinds(counted))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := 0; i < n; i++ {
		apply(t, g, fmt.Sprintf("kind: Counted\nname: a\nv: %d\n", i))
		if err := g.Delete(context.Background(), "Counted", "a"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if b := builds.Load(); b != n {
		t.Errorf("%d local applies of an object, each deleted right after, built it %d times: %d resurrections by the store follower", n, b, b-n)
	}
}

// The Proxy's pool timeout "cuts the body" when it expires while the body
// streams (filters/proxy/spec.go); with WriteResponse's error swallowed the
// client gets a well-formed, complete-looking chunked response.
func TestProxyTimeoutCutIsVisible(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 10; i++ {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer backend.Close()
	g := newGateway(t)
	apply(t, g, serverYAML+"---\nkind: Pipeline\nname: p\nfilters:\n  - name: proxy\n    kind: Proxy\n    pools: [{timeout: 250ms, servers: [{url: "+backend.URL+"}]}]\n")
	h, _ := g.Handler("server")
	front := httptest.NewServer(h)
	defer front.Close()
	resp, err := http.Get(front.URL + "/p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && !strings.Contains(string(b), "chunk9") {
		t.Errorf("the pool timeout cut the body at %q; the client got %d and no error", b, resp.StatusCode)
	}
}
