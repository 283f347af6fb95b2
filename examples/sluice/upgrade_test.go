package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHotUpgradeUnderLoad builds the binary, serves a Mock through it and
// upgrades it twice, once through the admin API and once with SIGHUP,
// while keep-alive and one-connection-per-request clients keep sending
// requests: none may fail, and after each upgrade the new process (its
// PID from -pid-file) answers and the old one has exited.
func TestHotUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	admin, web := freeAddr(t), freeAddr(t)
	host, port, _ := strings.Cut(web, ":")
	objects := writeFile(t, "objects.yaml", fmt.Sprintf(`kind: HTTPServer
name: web
address: %s
port: %s
rules:
  - paths:
      - pathPrefix: /
        backend: answer
---
kind: Pipeline
name: answer
filters:
  - name: mock
    kind: Mock
    rules:
      - body: ok
        delay: 20ms
`, host, port))
	pidFile := filepath.Join(dir, "sluice.pid")
	cmd := exec.Command(bin, "server", "-admin", admin, "-f", objects, "-drain", "10s", "-pid-file", pidFile)
	// Files, not pipes: the later processes inherit them and outlive the
	// first, whose Wait would otherwise wait for them.
	stderr := &logFile{path: filepath.Join(dir, "stderr")}
	f, err := os.Create(stderr.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	firstExited := make(chan struct{})
	var firstErr error
	go func() { firstErr = cmd.Wait(); close(firstExited) }()
	// The processes after the first are not the test's children: stop
	// whichever serves at the end.
	var lastPID atomic.Int64
	lastPID.Store(int64(cmd.Process.Pid))
	t.Cleanup(func() {
		select {
		case <-firstExited:
		default:
			cmd.Process.Kill()
			<-firstExited
		}
		if pid := int(lastPID.Load()); pid != cmd.Process.Pid {
			syscall.Kill(pid, syscall.SIGTERM)
			waitGone(t, pid, stderr)
		}
	})
	adminURL := "http://" + admin + "/apis/v2/upgrade"
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	servingPID := func() int {
		resp, err := hc.Get(adminURL)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var st upgradeState
		if json.NewDecoder(resp.Body).Decode(&st) != nil || !st.HotUpgrade {
			return 0
		}
		return st.PID
	}
	waitFor(t, stderr, "the first process to serve", func() bool { return servingPID() == cmd.Process.Pid })

	// The load: keep-alive clients and clients with a connection per
	// request, until stop.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		tr := &http.Transport{DisableKeepAlives: i%2 == 1, MaxIdleConnsPerHost: 4}
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + web + "/r" + strconv.Itoa(n))
				if err == nil {
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if rerr != nil || resp.StatusCode != 200 || string(body) != "ok" {
						err = fmt.Errorf("status %d, body %q, read error %v", resp.StatusCode, body, rerr)
					}
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					errs = append(errs, err.Error())
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()
	waitRequests := func(n int64) {
		target := ok.Load() + n
		waitFor(t, stderr, "requests to be answered", func() bool { return ok.Load() >= target })
	}
	readPID := func() int {
		b, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	waitRequests(200)

	// First upgrade: through the admin API.
	resp, err := hc.Post(adminURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST upgrade: %d %s\nstderr:\n%s", resp.StatusCode, body, stderr.String())
	}
	second := readPID()
	if second == 0 || second == cmd.Process.Pid {
		t.Fatalf("pid file says %d after the upgrade; the first process is %d", second, cmd.Process.Pid)
	}
	lastPID.Store(int64(second))
	select {
	case <-firstExited:
		if firstErr != nil {
			t.Fatalf("the first process exited with %v\nstderr:\n%s", firstErr, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the first process did not exit\nstderr:\n%s", stderr.String())
	}
	if got := servingPID(); got != second {
		t.Fatalf("after the first upgrade process %d answers, want %d", got, second)
	}
	waitRequests(200)

	// Second upgrade: SIGHUP to the new process.
	if err := syscall.Kill(second, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, stderr, "a third process", func() bool { p := readPID(); return p != 0 && p != second })
	third := readPID()
	lastPID.Store(int64(third))
	waitGone(t, second, stderr)
	if got := servingPID(); got != third {
		t.Fatalf("after the second upgrade process %d answers, want %d", got, third)
	}
	waitRequests(200)
	stopLoad()

	if n := failed.Load(); n > 0 {
		errMu.Lock()
		defer errMu.Unlock()
		t.Fatalf("%d of %d requests failed during the upgrades, e.g. %q\nstderr:\n%s", n, n+ok.Load(), errs[:min(5, len(errs))], stderr.String())
	}
	t.Logf("%d requests, none failed, over two upgrades (%d → %d → %d)", ok.Load(), cmd.Process.Pid, second, third)
}

// logFile is a file the binary logs to.
type logFile struct{ path string }

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, stderr *logFile, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nstderr:\n%s", what, stderr.String())
		}
	}
}

// waitGone waits until process pid has exited: it no longer exists, or is
// a zombie waiting for a parent that is not the test.
func waitGone(t *testing.T, pid int, stderr *logFile) {
	t.Helper()
	waitFor(t, stderr, "process "+strconv.Itoa(pid)+" to exit", func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		// The state follows the command name in parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		return err == nil && i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
	})
}

// TestUpgradeAPIWithoutHotUpgrade: a process that cannot upgrade (here,
// the server run inside the test) says so, and the endpoint keeps the
// admin API's authentication.
func TestUpgradeAPIWithoutHotUpgrade(t *testing.T) {
	admin := freeAddr(t)
	server := "http://" + admin
	p := start(t, "", "server", "-admin", admin, "-admin-token", "s3cret")
	waitHealthy(t, p, server, "-token", "s3cret")
	hc := httpClient(t)
	req, _ := http.NewRequest("POST", server+"/apis/v2/upgrade", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d, want 401", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "not available") {
		t.Fatalf("POST: %d %s, want 501", resp.StatusCode, body)
	}
	req.Host = "evil.example" // DNS rebinding
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a foreign Host: %d, want 403", resp.StatusCode)
	}
	code, _, stderr := ctl(t, "", "upgrade", "-server", server, "-token", "s3cret")
	if code != exitFail || !strings.Contains(stderr, "not available") {
		t.Fatalf("sluice upgrade: exit %d, stderr %q", code, stderr)
	}
}
