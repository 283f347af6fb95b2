package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicegw/sluice/pipeline"
)

// TestAllowUpgrade checks that the route's allowUpgrade (rule or path)
// reaches the pipeline in RequestInfo, and that elsewhere the offer to
// upgrade is removed before the pipeline sees the request.
func TestAllowUpgrade(t *testing.T) {
	spec := mustSpec(t, `
port: 0
address: 127.0.0.1
rules:
  - host: rule.example.com
    allowUpgrade: true
    paths:
      - pathPrefix: /
        backend: b
  - paths:
      - path: /ws
        allowUpgrade: true
        backend: b
      - pathPrefix: /
        backend: b
`)
	type seen struct {
		allowed           bool
		upgrade, conn     string
		hasInfo, settings bool
	}
	var got seen
	resolve := func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ri := pipeline.RequestInfoOf(r)
			got = seen{hasInfo: ri != nil, upgrade: r.Header.Get("Upgrade"), conn: r.Header.Get("Connection"),
				settings: r.Header.Get("Http2-Settings") != ""}
			if ri != nil {
				got.allowed = ri.UpgradeAllowed
			}
		})
	}
	s, err := New("s", spec, Options{Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path, upgrade, conn string
		want                            seen
	}{
		{"path allows", "x", "/ws", "websocket", "Upgrade", seen{allowed: true, upgrade: "websocket", conn: "Upgrade"}},
		{"rule allows", "rule.example.com", "/any", "websocket", "keep-alive, Upgrade", seen{allowed: true, upgrade: "websocket", conn: "keep-alive, Upgrade"}},
		{"not allowed", "x", "/other", "websocket", "Upgrade", seen{}},
		{"not allowed, other tokens kept", "x", "/other", "websocket", "keep-alive, Upgrade", seen{conn: "keep-alive"}},
		{"no upgrade asked", "x", "/ws", "", "", seen{allowed: true}},
		// h2c is not taken here (no listener), and its offer goes as before;
		// the websocket offer beside it passes where allowed.
		{"h2c stripped, websocket kept", "x", "/ws", "h2c, websocket", "Upgrade, HTTP2-Settings", seen{allowed: true, upgrade: "websocket", conn: "Upgrade"}},
		{"h2c and websocket stripped", "x", "/other", "h2c, websocket", "Upgrade, HTTP2-Settings", seen{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = seen{}
			r := httptest.NewRequest(http.MethodGet, "http://"+tt.host+tt.path, nil)
			if tt.upgrade != "" {
				r.Header.Set("Upgrade", tt.upgrade)
				r.Header.Set("Connection", tt.conn)
				r.Header.Set("Http2-Settings", "AAMAAABkAAQAAP__")
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			tt.want.hasInfo = true
			if tt.upgrade != "" && tt.upgrade != "h2c, websocket" {
				tt.want.settings = true // not an h2c offer: passed on (the proxy strips it)
			}
			if got != tt.want {
				t.Errorf("pipeline saw %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStripUpgrade(t *testing.T) {
	h := http.Header{"Connection": {"Upgrade", "close, x-y"}, "Upgrade": {"websocket"}}
	stripUpgrade(h)
	if _, ok := h["Upgrade"]; ok {
		t.Error("Upgrade kept")
	}
	if got := h["Connection"]; len(got) != 1 || got[0] != "close, x-y" {
		t.Errorf("Connection %q, want [close, x-y]", got)
	}
	h = http.Header{"Connection": {"upgrade"}}
	stripUpgrade(h) // no Upgrade header: nothing offered, nothing to remove
	if h.Get("Connection") != "upgrade" {
		t.Errorf("Connection %q changed", h.Get("Connection"))
	}
}
