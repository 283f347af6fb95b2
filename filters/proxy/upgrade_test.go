package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// switcher answers 101 "Upgrade: test" and echoes bytes, over a hijacked
// connection, when the request asks to upgrade (or always, with always
// set); otherwise 200 "plain". ended gets a value when an upgraded
// connection is done.
func switcher(always bool, ended chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !always && r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() {
			conn.Close()
			ended <- struct{}{}
		}()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		if brw.Flush() == nil {
			io.Copy(conn, brw.Reader)
		}
	})
}

func upgradeRequest(allowed bool) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Connection", "Upgrade, Keep-Alive")
	r.Header.Set("Upgrade", "test")
	r.Header.Set("Keep-Alive", "timeout=5")
	r.Header.Set("Proxy-Authorization", "secret")
	return pipeline.WithRequestInfo(r, &pipeline.RequestInfo{UpgradeAllowed: allowed})
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	for _, extra := range []string{"", "protocol: h2c"} { // an Upgrade never goes over HTTP/2
		t.Run("protocol "+extra, func(t *testing.T) {
			t.Parallel()
			ended := make(chan struct{}, 1)
			be := filtertest.NewBackend(t, switcher(false, ended))
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL, extra))
			c := pipeline.NewContext(upgradeRequest(true))
			if res := h.Filter.Handle(c); res != pipeline.Continue {
				t.Fatalf("result %q", res)
			}
			resp := c.Response()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if resp.Header.Get("Upgrade") != "test" || resp.Header.Get("Connection") != "Upgrade" {
				t.Errorf("response header %v", resp.Header)
			}
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				t.Fatalf("body %T is not an io.ReadWriteCloser", resp.Body)
			}
			seen := be.Requests()[0].Header
			if seen.Get("Upgrade") != "test" || seen.Get("Connection") != "Upgrade" ||
				seen.Get("Keep-Alive") != "" || seen.Get("Proxy-Authorization") != "" {
				t.Errorf("backend saw %v: want the Upgrade and nothing else hop-by-hop", seen)
			}
			io.WriteString(rwc, "ping")
			buf := make([]byte, 4)
			if _, err := io.ReadFull(bufio.NewReader(rwc), buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo %q, %v", buf, err)
			}
			rwc.Close()
			c.Finish()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("backend connection still open")
			}
		})
	}
}

// Without the gate's permission the offer is not passed on, and a 101 the
// server sends anyway is a 502.
func TestUpgradeNotAllowed(t *testing.T) {
	t.Parallel()
	t.Run("offer removed", func(t *testing.T) {
		t.Parallel()
		be := filtertest.NewBackend(t, switcher(false, nil))
		h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
		out := h.Do(upgradeRequest(false))
		if out.Response.StatusCode != http.StatusOK || out.Body != "plain" {
			t.Errorf("got %d %q, want 200 plain", out.Response.StatusCode, out.Body)
		}
		if seen := be.Requests()[0].Header; seen.Get("Upgrade") != "" || strings.Contains(seen.Get("Connection"), "pgrade") {
			t.Errorf("backend saw %v", seen)
		}
	})
	t.Run("unasked 101", func(t *testing.T) {
		t.Parallel()
		ended := make(chan struct{}, 1)
		be := filtertest.NewBackend(t, switcher(true, ended))
		h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
		out := h.Do(upgradeRequest(false))
		if out.Result != proxy.ResultServerError || out.Response.StatusCode != http.StatusBadGateway {
			t.Errorf("got %q %d, want serverError 502", out.Result, out.Response.StatusCode)
		}
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("backend connection still open")
		}
	})
}
