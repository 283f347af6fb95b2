package gate

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestHTTP3BesideTCP sends 1000 requests over HTTP/3 through the gate
// while HTTP/1.1 and HTTP/2 clients use the same port number over TCP;
// none may fail, and the TCP responses advertise HTTP/3 with Alt-Svc.
func TestHTTP3BesideTCP(t *testing.T) {
	ca := newCA(t)
	c, k := ca.leaf(t, false, "h3.test")
	s := startSpec(t, tlsSpec(t, "http3: true\n", map[string][2]string{"a": {c, k}}), nil, "ok")
	defer s.Close()
	addr := s.Addr()
	_, port, _ := strings.Cut(addr, ":")
	cfg := &tls.Config{RootCAs: ca.pool, ServerName: "h3.test"}

	// Each transport gets its own copy: they set their ALPN protocols.
	h3 := &http3.Transport{TLSClientConfig: cfg.Clone()}
	defer h3.Close()
	clients := map[string]*http.Client{
		"HTTP/3.0": {Transport: h3, Timeout: 10 * time.Second},
		"HTTP/2.0": tlsClient(t, cfg.Clone(), true),
		"HTTP/1.1": tlsClient(t, cfg.Clone(), false),
	}
	const n = 1000
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		counts = map[string]int{}
	)
	for proto, cl := range clients {
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					resp, body, err := get(cl, fmt.Sprintf("https://%s/r/%d", addr, i))
					mu.Lock()
					switch {
					case err != nil:
						errs = append(errs, proto+": "+err.Error())
					case resp.StatusCode != 200 || body != "ok "+proto:
						errs = append(errs, fmt.Sprintf("%s: %d %q", proto, resp.StatusCode, body))
					case proto != "HTTP/3.0" && resp.Header.Get("Alt-Svc") != `h3=":`+port+`"; ma=86400`:
						errs = append(errs, fmt.Sprintf("%s: Alt-Svc %q", proto, resp.Header.Get("Alt-Svc")))
					case proto == "HTTP/3.0" && resp.Header.Get("Alt-Svc") != "":
						errs = append(errs, "HTTP/3 response advertises itself")
					default:
						counts[proto]++
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d failed requests, first: %s", len(errs), errs[0])
	}
	for proto := range clients {
		if counts[proto] != n {
			t.Errorf("%s: %d of %d requests answered", proto, counts[proto], n)
		}
	}
}

// TestHTTP3Shutdown drains an HTTP/3 request in flight and frees the UDP
// port; a new server can bind it again.
func TestHTTP3Shutdown(t *testing.T) {
	ca := newCA(t)
	c, k := ca.leaf(t, false, "h3.test")
	spec := tlsSpec(t, "http3: true\n", map[string][2]string{"a": {c, k}})
	entered, release := make(chan struct{}), make(chan struct{})
	s := serveHandler(t, spec, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "drained")
	}))
	addr := s.Addr()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "h3.test"}}
	defer h3.Close()
	got := make(chan string, 1)
	go func() {
		resp, body, err := get(&http.Client{Transport: h3}, "https://"+addr+"/")
		if err != nil {
			got <- err.Error()
			return
		}
		got <- fmt.Sprint(resp.StatusCode, " ", body)
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	close(release)
	if r := <-got; r != "200 drained" {
		t.Errorf("request in flight during shutdown: %s", r)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	// The port is free again, on TCP and on UDP.
	spec2 := tlsSpec(t, "http3: true\n", map[string][2]string{"a": {c, k}})
	_, p, _ := strings.Cut(addr, ":")
	fmt.Sscan(p, &spec2.Port)
	s2 := startSpec(t, spec2, nil, "again")
	defer s2.Close()
	h3b := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "h3.test"}}
	defer h3b.Close()
	if _, body, err := get(&http.Client{Transport: h3b, Timeout: 10 * time.Second}, "https://"+addr+"/"); err != nil || body != "again HTTP/3.0" {
		t.Errorf("after rebinding: %q %v", body, err)
	}
}

func TestHTTP3NeedsHTTPS(t *testing.T) {
	s := &Spec{}
	s.SetDefaults()
	s.HTTP3 = true
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "http3") {
		t.Errorf("http3 without https: %v", err)
	}
}
