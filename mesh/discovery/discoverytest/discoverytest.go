// Package discoverytest helps test service-registry backends end to end: it
// runs a real Gateway whose Proxy pool takes its servers from a registry
// object, upstream servers that answer with their names, and a concurrent
// load that counts which server answered and how many requests failed.
package discoverytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Upstream is an HTTP server on loopback that answers every request with
// its name.
type Upstream struct {
	Name string
	Host string // 127.0.0.1
	Port int
	srv  *httptest.Server
}

// NewUpstream starts an Upstream, closed at the end of the test.
func NewUpstream(t testing.TB, name string) *Upstream {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return &Upstream{Name: name, Host: host, Port: p, srv: srv}
}

// Harness is a started Gateway with a registry object, a pipeline whose
// Proxy's main pool takes the registry's instances of a service, and an
// HTTPServer on loopback routing every request to the pipeline.
type Harness struct {
	G        *sluice.Gateway
	URL      string // the HTTPServer's base URL
	Registry string // the registry object's name
}

// Start applies registryYAML (one registry object called registry) with
// the pipeline and server, and starts the gateway; it is shut down at the
// end of the test. proxyExtra is YAML added to the pool (indented for
// the pool's mapping), e.g. "    loadBalance: {policy: roundRobin}\n".
func Start(t testing.TB, kinds []sluice.ObjectKind, registryYAML, registry, service, proxyExtra string) *Harness {
	t.Helper()
	g, err := sluice.New(sluice.WithObjectKinds(kinds...))
	if err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	y := registryYAML + fmt.Sprintf(`
---
kind: Pipeline
name: p
filters:
- kind: Proxy
  name: proxy
  pools:
  - serviceRegistry: %s
    serviceName: %s
%s---
kind: HTTPServer
name: s
address: 127.0.0.1
port: %d
rules: [{paths: [{pathPrefix: /, backend: p}]}]
`, registry, service, proxyExtra, port)
	if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return &Harness{G: g, URL: "http://127.0.0.1:" + strconv.Itoa(port), Registry: registry}
}

// Get sends one GET and returns the status and body.
func (h *Harness) Get(c *http.Client) (int, string, error) {
	resp, err := c.Get(h.URL + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// ObjectStatus returns the status of the object called name as generic
// JSON values (what an admin client sees).
func (h *Harness) ObjectStatus(name string) map[string]any {
	for _, o := range h.G.Status().Objects {
		if o.Name == name {
			b, err := json.Marshal(o.Status)
			if err != nil {
				return nil
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			return m
		}
	}
	return nil
}

// RegistryStale reports whether the registry object's status says stale.
func (h *Harness) RegistryStale() bool {
	st := h.ObjectStatus(h.Registry)
	stale, _ := st["stale"].(bool)
	return stale
}

// PoolStale reports whether the pipeline's main pool says its instances
// are stale.
func (h *Harness) PoolStale() bool {
	b, _ := json.Marshal(h.ObjectStatus("p"))
	return strings.Contains(string(b), `"stale":true`)
}

// Load sends GETs from several goroutines until Stop, counting the
// answers by body and the failures (errors and statuses other than 200).
type Load struct {
	h       *Harness
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	counts  map[string]int
	failed  atomic.Int64
	lastErr atomic.Value
	client  *http.Client
}

// StartLoad waits for the pool's first server (the registry syncs after
// the gateway starts), then starts workers goroutines sending requests.
func (h *Harness) StartLoad(t testing.TB, workers int) *Load {
	t.Helper()
	Eventually(t, 20*time.Second, "a first answer through the registry's instances", func() bool {
		code, _, err := h.Get(http.DefaultClient)
		return err == nil && code == http.StatusOK
	})
	l := &Load{h: h, stop: make(chan struct{}), counts: map[string]int{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := h.Get(l.client)
				if err != nil || code != http.StatusOK {
					l.failed.Add(1)
					l.lastErr.Store(fmt.Sprintf("status %d body %q error %v", code, body, err))
					continue
				}
				l.mu.Lock()
				l.counts[body]++
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.Stop)
	return l
}

// Reset zeroes the counts and returns the old ones.
func (l *Load) Reset() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = map[string]int{}
	return c
}

// Counts returns a copy of the counts by body.
func (l *Load) Counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		c[k] = v
	}
	return c
}

// Failed returns the number of failed requests and the last failure.
func (l *Load) Failed() (int64, string) {
	s, _ := l.lastErr.Load().(string)
	return l.failed.Load(), s
}

// Stop stops the load and waits for the workers. It may be called more
// than once.
func (l *Load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

// Eventually polls cond every 10ms until it holds or timeout passes, and
// fails the test with msg then.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Only waits until the load's answers, since a Reset, come only from the
// upstreams named (at least min of them), failing after timeout. It
// resets the counts as it polls.
func (l *Load) Only(t testing.TB, timeout time.Duration, names ...string) {
	t.Helper()
	l.Reset()
	Eventually(t, timeout, fmt.Sprintf("traffic only to %v (last: %v)", names, l.Counts()), func() bool {
		time.Sleep(100 * time.Millisecond)
		c := l.Reset()
		if len(c) == 0 {
			return false
		}
		for k := range c {
			found := false
			for _, n := range names {
				found = found || k == n
			}
			if !found {
				return false
			}
		}
		for _, n := range names {
			if c[n] == 0 {
				return false
			}
		}
		return true
	})
}
