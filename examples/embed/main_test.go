package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// A gateway that is loaded and mounted but never started runs no
// goroutine of its own.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestApp serves the program's router on a real loopback server and checks
// that the gateway answers under /api/ and the program's routes still work.
func TestApp(t *testing.T) {
	h, err := app()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()

	tests := []struct {
		name        string
		method      string
		path        string
		code        int
		body        string
		contentType string
	}{
		{"gateway", http.MethodGet, "/api/hello", 200, `{"hello": "from the gateway"}`, "application/json"},
		{"gateway, any path under /api/", http.MethodGet, "/api/users/7", 200, `{"hello": "from the gateway"}`, "application/json"},
		{"gateway's method rule", http.MethodPost, "/api/hello", 405, "", ""},
		{"app's own page", http.MethodGet, "/", 200, "the app's own page\n", "text/plain; charset=utf-8"},
		{"app's own 404", http.MethodGet, "/nope", 404, "404 page not found\n", "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.code, b)
			}
			if tt.body != "" && string(b) != tt.body {
				t.Errorf("body %q, want %q", b, tt.body)
			}
			if ct := resp.Header.Get("Content-Type"); tt.contentType != "" && ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
		})
	}
}
