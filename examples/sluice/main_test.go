package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		// TestSignals runs the test binary as the sluice binary.
		main()
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer that a running command writes to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// proc is a serving command running in a goroutine.
type proc struct {
	cancel context.CancelFunc
	done   chan int
	code   int
	stdout syncBuffer
	stderr syncBuffer
}

// start runs a serving command until stop or the end of the test.
func start(t *testing.T, stdin string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan int, 1)}
	go func() { p.done <- run(ctx, args, strings.NewReader(stdin), &p.stdout, &p.stderr) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop cancels the command (as SIGINT would) and returns its exit status.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	if p.done != nil {
		select {
		case p.code = <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the command did not stop; stderr:\n%s", p.stderr.String())
		}
		p.done = nil
	}
	return p.code
}

// exited reports whether the command has returned, and its status.
func (p *proc) exited() (int, bool) {
	select {
	case code := <-p.done:
		p.code, p.done = code, nil
		return code, true
	default:
		return 0, false
	}
}

// ctl runs a client command to completion.
func ctl(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// mustCtl runs a client command that must succeed and returns its output.
func mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := ctl(t, "", args...)
	if code != 0 {
		t.Fatalf("sluice %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// waitHealthy waits until the admin API at server answers and the command
// has printed its banner ("... is running"): the admin API answers a
// moment before the banner is written.
func waitHealthy(t *testing.T, p *proc, server string, extra ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	healthy := false
	for {
		if !healthy {
			code, _, _ := ctl(t, "", append([]string{"health", "-server", server}, extra...)...)
			healthy = code == 0
		}
		if healthy && strings.Contains(p.stdout.String(), "is running") {
			return
		}
		if c, ok := p.exited(); ok {
			t.Fatalf("the command exited with %d before it was healthy; stderr:\n%s", c, p.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API at %s is not healthy; stderr:\n%s", server, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpClient returns a client whose connections are closed at the end of
// the test.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request and returns the status and body.
func do(t *testing.T, hc *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// writeFile writes content to a file in the test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

func TestDemo(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"demo command", []string{"demo"}},
		{"flags alone", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, listen, mirror := freeAddr(t), freeAddr(t), freeAddr(t)
			p := start(t, "", append(tc.cmd, "-admin", admin, "-listen", listen, "-mirror", mirror)...)
			waitHealthy(t, p, "http://"+admin)
			mustContain(t, "the banner", p.stdout.String(),
				"curl -d hello http://"+listen+"/pipeline",
				"-server http://"+admin,
			)

			code, body := do(t, httpClient(t), http.MethodPost, "http://"+listen+"/pipeline", "hello")
			if code != http.StatusOK {
				t.Fatalf("POST /pipeline: %d %s", code, body)
			}
			mustContain(t, "the mirrored request", body,
				"Your Request\n==============\n",
				"Method: POST\n",
				"URL   : /pipeline\n",
				"Host  : "+mirror+"\n",
				"  Content-Type: application/x-www-form-urlencoded\n",
				"Body  : hello",
			)

			// The demo's objects are visible through the admin API.
			out := mustCtl(t, "object", "get", "-server", "http://"+admin)
			mustContain(t, "object get", out, "pipeline-demo", "server-demo")

			if code := p.stop(t); code != 0 {
				t.Fatalf("exit %d after cancel; stderr:\n%s", code, p.stderr.String())
			}
			// Everything is closed.
			for _, addr := range []string{admin, listen, mirror} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("%s still accepts connections after shutdown", addr)
				}
			}
		})
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"listen without port", []string{"demo", "-listen", "127.0.0.1"}, "-listen"},
		{"listen host name", []string{"demo", "-listen", "example.com:80"}, "must be an IP address"},
		{"listen port zero", []string{"demo", "-listen", "127.0.0.1:0"}, "1 to 65535"},
		{"argument", []string{"demo", "extra"}, "unexpected argument"},
		{"drain", []string{"demo", "-drain", "0s"}, "-drain must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := ctl(t, "", tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, errs)
			}
			mustContain(t, "stderr", errs, tc.want, "Usage: sluice demo")
		})
	}
}

func TestDemoPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	admin, mirror := freeAddr(t), freeAddr(t)
	code, _, errs := ctl(t, "", "demo", "-admin", admin, "-listen", ln.Addr().String(), "-mirror", mirror)
	if code != exitFail {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFail, errs)
	}
	mustContain(t, "stderr", errs, "server-demo", "address already in use")
	// What had started (the mirror) was stopped again.
	if c, err := net.DialTimeout("tcp", mirror, time.Second); err == nil {
		c.Close()
		t.Errorf("the mirror at %s still accepts connections", mirror)
	}
}
