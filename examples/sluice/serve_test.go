package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServerFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin bool
	}{
		{"file", false},
		{"stdin", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mirror := freeAddr(t)
			start(t, "", "mirror", "-addr", mirror)
			web, admin := freeAddr(t), freeAddr(t)
			objects := webYAML(web, mirror, "from "+tc.name)
			var p *proc
			if tc.stdin {
				p = start(t, objects, "server", "-f", "-", "-admin", admin)
			} else {
				p = start(t, "", "server", "-admin", admin, "-f", writeFile(t, "objects.yaml", objects))
			}
			waitHealthy(t, p, "http://"+admin)
			mustContain(t, "the banner", p.stdout.String(), "3 object(s)", "HTTPServer web", "http://"+admin+"/apis/v2")

			hc := httpClient(t)
			code, body := do(t, hc, http.MethodPost, "http://"+web+"/pipeline", "hello")
			if code != http.StatusOK {
				t.Fatalf("POST /pipeline: %d %s", code, body)
			}
			mustContain(t, "the mirrored request", body, "Method: POST", "Body  : hello")
			if code, body := do(t, hc, http.MethodGet, "http://"+web+"/mock", ""); body != "from "+tc.name {
				t.Errorf("GET /mock: %d %q", code, body)
			}
			if code, _ := do(t, hc, http.MethodGet, "http://"+web+"/nowhere", ""); code != http.StatusNotFound {
				t.Errorf("GET /nowhere: %d, want 404", code)
			}

			if code := p.stop(t); code != 0 {
				t.Fatalf("exit %d after cancel; stderr:\n%s", code, p.stderr.String())
			}
			for _, addr := range []string{web, admin} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("%s still accepts connections after shutdown", addr)
				}
			}
		})
	}
}

func TestServerBadFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{
			"unknown field",
			"kind: HTTPServer\nname: web\naddress: 127.0.0.1\nport: 1\nbogus: 2\n",
			[]string{"objects.yaml", `HTTPServer "web"`, "line 5", `field "bogus"`},
		},
		{
			"unknown kind",
			"kind: HTTPServer\nname: web\nport: 1\n---\nkind: Nope\nname: x\n",
			[]string{"objects.yaml", "line 5", `unknown object kind "Nope"`},
		},
		{
			"not yaml",
			"kind: [\n",
			[]string{"objects.yaml", "invalid spec"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := ctl(t, "", "server", "-admin", freeAddr(t), "-f", writeFile(t, "objects.yaml", tc.file))
			if code != exitFail {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFail, errs)
			}
			mustContain(t, "stderr", errs, tc.want...)
		})
	}
	code, _, errs := ctl(t, "", "server", "-admin", freeAddr(t), "-f", "/nonexistent/objects.yaml")
	if code != exitFail || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
}

func TestMirrorCommand(t *testing.T) {
	addr := freeAddr(t)
	p := start(t, "", "mirror", "-addr", addr)
	hc := httpClient(t)
	var (
		resp *http.Response
		err  error
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/pipeline?x=1", strings.NewReader("hello"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Adapt-Key", "goodplan")
		req.Header.Set("User-Agent", "test")
		req.Header.Add("X-Multi", "b")
		req.Header.Add("X-Multi", "a")
		if resp, err = hc.Do(req); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `Your Request
==============
Method: POST
URL   : /pipeline?x=1
Proto : HTTP/1.1
Host  : ` + addr + `
Header:
  Accept-Encoding: gzip
  Connection: close
  Content-Length: 5
  Content-Type: application/x-www-form-urlencoded
  User-Agent: test
  X-Adapt-Key: goodplan
  X-Multi: b
  X-Multi: a
Body  : hello
`
	if resp.StatusCode != http.StatusOK || string(got) != want {
		t.Errorf("mirror answered %d:\n%s\nwant:\n%s", resp.StatusCode, got, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	mustContain(t, "the banner", p.stdout.String(), "http://"+addr)
	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestMirrorBoundsTheBody(t *testing.T) {
	big := strings.Repeat("x", mirrorMaxBody+100)
	rec := httptest.NewRecorder()
	mirrorHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/big", strings.NewReader(big)))
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.HasSuffix(body, fmt.Sprintf("<truncated after %d bytes>\n", mirrorMaxBody)) {
		t.Errorf("the body is not marked truncated: ...%s", body[len(body)-80:])
	}
	if !strings.Contains(body, "Body  : "+big[:mirrorMaxBody]+"\n<truncated") {
		t.Errorf("the echoed body is not the first %d bytes", mirrorMaxBody)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{name: "help", args: []string{"help"}, stdout: []string{"Usage:", "sluice server", "object COMMAND", "create -f FILE"}},
		{name: "-h", args: []string{"-h"}, stdout: []string{"Usage:", "sluice mirror"}},
		{name: "--help", args: []string{"--help"}, stdout: []string{"Usage:"}},
		{name: "help command", args: []string{"help", "object", "get"}, stdout: []string{"Usage: sluice object get", "-kind", "-server", "-token"}},
		{name: "help server", args: []string{"help", "server"}, stdout: []string{"Usage: sluice server", "-admin-token", "-f file"}},
		{name: "command -h", args: []string{"object", "delete", "-h"}, stdout: []string{"Usage: sluice object delete"}},
		{name: "object help", args: []string{"object", "help"}, stdout: []string{"Usage: sluice object COMMAND", "describe"}},
		{name: "help unknown", args: []string{"help", "nope"}, code: exitUsage, stderr: []string{`unknown command "nope"`}},
		{name: "unknown command", args: []string{"nope"}, code: exitUsage, stderr: []string{`unknown command "nope"`, "Usage:"}},
		{name: "object alone", args: []string{"object"}, code: exitUsage, stderr: []string{"missing command", "Usage: sluice object"}},
		{name: "unknown object command", args: []string{"object", "nope"}, code: exitUsage, stderr: []string{`unknown command "nope"`}},
		{name: "unknown flag", args: []string{"object", "get", "-nope"}, code: exitUsage, stderr: []string{"-nope", "Usage: sluice object get"}},
		{name: "two names", args: []string{"object", "get", "a", "b"}, code: exitUsage, stderr: []string{"at most one NAME"}},
		{name: "bad output", args: []string{"object", "get", "-o", "xml"}, code: exitUsage, stderr: []string{`-o "xml"`}},
		{name: "describe table", args: []string{"object", "describe", "x", "-o", "table"}, code: exitUsage, stderr: []string{"want one of yaml, json"}},
		{name: "create without -f", args: []string{"object", "create"}, code: exitUsage, stderr: []string{"-f is required"}},
		{name: "delete nothing", args: []string{"object", "delete"}, code: exitUsage, stderr: []string{"NAMEs or -f FILE"}},
		{name: "delete both", args: []string{"object", "delete", "a", "-f", "x.yaml"}, code: exitUsage, stderr: []string{"NAMEs or -f FILE"}},
		{name: "describe nothing", args: []string{"object", "describe"}, code: exitUsage, stderr: []string{"want one NAME"}},
		{name: "bad server", args: []string{"health", "-server", "ftp://x"}, code: exitUsage, stderr: []string{"-server"}},
		{name: "mirror argument", args: []string{"mirror", "x"}, code: exitUsage, stderr: []string{"unexpected argument"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := ctl(t, "", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			mustContain(t, "stdout", out, tc.stdout...)
			mustContain(t, "stderr", errs, tc.stderr...)
			if tc.code != 0 && out != "" {
				t.Errorf("a usage error printed to stdout:\n%s", out)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		o    string
	}{
		{[]string{"a", "-o", "json"}, "a", "json"},
		{[]string{"-o", "json", "a"}, "a", "json"},
		{[]string{"a", "-o", "json", "b"}, "a b", "json"},
		{[]string{"-o", "json", "--", "-a", "-o"}, "-a -o", "json"},
		{[]string{"-", "-o=yaml"}, "-", "yaml"},
	} {
		c := &cli{}
		fs := c.flagSet(&command{name: "t"})
		o := fs.String("o", "", "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *o != tc.o {
			t.Errorf("parseArgs(%q) = %q, -o %q, %v; want %q, -o %q", tc.args, pos, *o, err, tc.pos, tc.o)
		}
	}
}

// TestSignals runs the binary in a child process (the test binary, whose
// TestMain calls main) and stops it with a signal while a slow request is in
// flight: the request completes and the exit status is 0.
func TestSignals(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip("no executable to run:", err)
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			admin, web := freeAddr(t), freeAddr(t)
			host, port, _ := strings.Cut(web, ":")
			objects := writeFile(t, "objects.yaml", fmt.Sprintf(`kind: HTTPServer
name: web
address: %s
port: %s
rules:
  - paths:
      - pathPrefix: /slow
        backend: slow
---
kind: Pipeline
name: slow
filters:
  - name: mock
    kind: Mock
    rules:
      - body: done
        delay: 500ms
`, host, port))
			cmd := exec.Command(exe, "server", "-admin", admin, "-f", objects, "-drain", "10s")
			cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
			var stdout, stderr syncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
			})
			server := "http://" + admin
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if code, _, _ := ctl(t, "", "health", "-server", server); code == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the child is not healthy; stderr:\n%s", stderr.String())
				}
			}

			hc := httpClient(t)
			type answer struct {
				code int
				body string
				err  error
			}
			slow := make(chan answer, 1)
			go func() {
				resp, err := hc.Get("http://" + web + "/slow")
				if err != nil {
					slow <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				slow <- answer{resp.StatusCode, string(b), err}
			}()
			// Signal once the request is in the pipeline.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				_, out, _ := ctl(t, "", "object", "status", "slow", "-o", "json", "-server", server)
				var st struct {
					Status struct {
						InFlight int `json:"inFlight"`
					} `json:"status"`
				}
				if json.Unmarshal([]byte(out), &st) == nil && st.Status.InFlight > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the slow request never arrived; status:\n%s", out)
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}

			a := <-slow
			if a.err != nil || a.code != http.StatusOK || a.body != "done" {
				t.Errorf("the request in flight at the signal: %d %q %v", a.code, a.body, a.err)
			}
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("exit: %v; stderr:\n%s", waitErr, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no exit after %v; stderr:\n%s", sig, stderr.String())
			}
			mustContain(t, "stderr", stderr.String(), "shutting down")
		})
	}
}
