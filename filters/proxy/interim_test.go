package proxy_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// TestEarlyHints: a 103 Early Hints a server sends before its answer
// reaches the client, over HTTP/1.1 and HTTP/2, with its Link header;
// the final response does not carry the 103's headers.
func TestEarlyHints(t *testing.T) {
	t.Parallel()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "final")
	}))
	t.Cleanup(be.Close)
	pl := newPipeline(t, nil, proxyPipeline(be.URL, "", ""))
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			gw := httptest.NewUnstartedServer(pl)
			var tr *http.Transport
			if h2 {
				gw.EnableHTTP2 = true
				gw.StartTLS()
				tr = gw.Client().Transport.(*http.Transport).Clone()
				tr.TLSClientConfig = &tls.Config{RootCAs: gw.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
				tr.ForceAttemptHTTP2 = true
			} else {
				gw.Start()
				tr = &http.Transport{}
			}
			t.Cleanup(gw.Close)
			t.Cleanup(tr.CloseIdleConnections)

			var mu sync.Mutex
			var codes []int
			var links []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				codes = append(codes, code)
				links = append(links, h.Get("Link"))
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, gw.URL+"/page", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("protocol %s", resp.Proto)
			}
			if resp.StatusCode != http.StatusOK || string(b) != "final" {
				t.Fatalf("final %d %q", resp.StatusCode, b)
			}
			if resp.Header.Get("Link") != "" {
				t.Errorf("the final response carries the 103's Link: %q", resp.Header.Get("Link"))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(codes) != 1 || codes[0] != http.StatusEarlyHints || !strings.Contains(links[0], "</app.css>") {
				t.Errorf("interim responses %v with Link %q, want one 103 with the server's Link", codes, links)
			}
		})
	}
}

// TestExpectContinue: a client that waits for 100 Continue before sending
// its body gets it and the server gets the body.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b)+" expect="+r.Header.Get("Expect"))
	}))
	t.Cleanup(be.Close)
	pl := newPipeline(t, nil, proxyPipeline(be.URL, "", ""))
	gw := httptest.NewServer(pl)
	t.Cleanup(gw.Close)
	tr := &http.Transport{ExpectContinueTimeout: 0}
	tr.ExpectContinueTimeout = 1 << 62 // wait for the 100: no timer decides
	t.Cleanup(tr.CloseIdleConnections)

	var got100 bool
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{Got100Continue: func() { mu.Lock(); got100 = true; mu.Unlock() }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPut, gw.URL+"/upload", strings.NewReader("data"))
	req.Header.Set("Expect", "100-continue")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if !got100 || resp.StatusCode != http.StatusOK || string(b) != "got data expect=100-continue" {
		t.Errorf("100 Continue seen: %v; final %d %q", got100, resp.StatusCode, b)
	}
}
