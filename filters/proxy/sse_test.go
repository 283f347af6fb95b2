package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServerSentEventsArriveIncrementally: each event the server flushes
// reaches the client before the server sends the next one. The server
// waits for the client to have read event n before it writes event n+1,
// so a proxy that buffered the response would hang the test.
func TestServerSentEventsArriveIncrementally(t *testing.T) {
	t.Parallel()
	got := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range []string{"one", "two", "three"} {
			io.WriteString(w, "data: "+ev+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-got:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(be.Close)
	gw := httptest.NewServer(newPipeline(t, nil, proxyPipeline(be.URL, "", "")))
	t.Cleanup(gw.Close)

	resp, err := http.Get(gw.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{"one", "two", "three"} {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if strings.TrimSpace(line) != "data: "+want {
			t.Fatalf("got %q, want data: %s", line, want)
		}
		br.ReadString('\n') // the blank line ending the event
		got <- struct{}{}
	}
}
