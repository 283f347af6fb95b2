package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/gate"
)

// TestConfig runs the program's config through the gateway's router,
// without a listener.
func TestConfig(t *testing.T) {
	g, err := newGateway(config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string
		code   int
		body   string
	}{
		{"no header", "", http.StatusBadRequest, "missing header: the request needs one of Cookie, Authorization\n"},
		{"cookie", "Cookie", http.StatusOK, "counted"},
		{"authorization", "Authorization", http.StatusOK, "counted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.header != "" {
				r.Header.Set(tt.header, "x")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.code || w.Body.String() != tt.body {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body, tt.code, tt.body)
			}
		})
	}
}

// TestServe runs serve as main does, on a free loopback port instead of
// 10081, sends a real request, and stops it the way SIGINT does: by
// cancelling its context.
func TestServe(t *testing.T) {
	g, err := newGateway(strings.Replace(config, "port: 10081", "port: 0", 1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, g) }()

	addr := waitAddr(t, g, "server")
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set("Cookie", "id=1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK || string(body) != "counted" {
		t.Errorf("got %d %q, want 200 \"counted\"", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context was cancelled")
	}
}

// waitAddr waits until the HTTPServer called name reports the address it
// bound.
func waitAddr(t *testing.T, g *sluice.Gateway, name string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, o := range g.Status().Objects {
			if st, ok := o.Status.(gate.Status); ok && o.Name == name && st.Address != "" {
				return st.Address
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("server %q did not report an address", name)
	return ""
}
