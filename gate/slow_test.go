package gate

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// connTracker wraps a listener and records how long each accepted
// connection stays open on the server's side. The server reaches it
// through Options.Listen.
type connTracker struct {
	net.Listener
	accepted atomic.Int64

	mu      sync.Mutex
	open    map[*trackedConn]struct{}
	tooLong int           // connections closed after the bound
	longest time.Duration // the longest closed connection's life
	bound   time.Duration
}

type trackedConn struct {
	net.Conn
	t     *connTracker
	start time.Time
	once  sync.Once
}

func (t *connTracker) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t.accepted.Add(1)
	tc := &trackedConn{Conn: c, t: t, start: time.Now()}
	t.mu.Lock()
	t.open[tc] = struct{}{}
	t.mu.Unlock()
	return tc, nil
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		life := time.Since(c.start)
		t := c.t
		t.mu.Lock()
		delete(t.open, c)
		t.longest = max(t.longest, life)
		if life > t.bound {
			t.tooLong++
		}
		t.mu.Unlock()
	})
	return c.Conn.Close()
}

// openOlderThan counts the open connections older than d.
func (t *connTracker) openOlderThan(d time.Duration) (n, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.open {
		if time.Since(c.start) > d {
			n++
		}
	}
	return n, len(t.open)
}

// raiseFileLimit makes room for n more open files, as far as the hard
// limit allows.
func raiseFileLimit(t *testing.T, n uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= n {
		return
	}
	rl.Cur = min(n, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < n {
		t.Skipf("cannot open %d files (limit %d): %v", n, rl.Cur, err)
	}
}

// TestSlowHeaders runs slowhttptest's slow-headers attack (Slowloris, 1000
// connections that send a header line now and then and never finish the
// head) against a server with readHeaderTimeout 2s. Meanwhile normal
// requests, each on a new connection, must all be answered, and every
// connection must be closed by the server within readHeaderTimeout + 2 s
// of its accept, which the server-side listener measures.
func TestSlowHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs slowhttptest for up to 12 s")
	}
	bin := requireTool(t, "slowhttptest", "apt-get install slowhttptest")
	const (
		conns             = 1000
		readHeaderTimeout = 2 * time.Second
		bound             = readHeaderTimeout + 2*time.Second
	)
	raiseFileLimit(t, 3*conns)
	tracker := &connTracker{open: map[*trackedConn]struct{}{}, bound: bound}
	spec := mustSpec(t, `
address: 127.0.0.1
readHeaderTimeout: 2s
rules: [{paths: [{pathPrefix: /, backend: b}]}]
`)
	s, err := New("s", spec, Options{
		Resolve: named,
		Listen: func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			tracker.Listener = ln
			return tracker, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Close() })
	url := "http://" + s.Addr() + "/"

	// The attack: 1000 connections at 250 a second, a header line every
	// second, for 12 seconds.
	var out bytes.Buffer
	cmd := exec.Command(bin, "-H", "-c", fmt.Sprint(conns), "-r", "250", "-i", "1", "-x", "16",
		"-l", "12", "-p", "3", "-u", url)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	attackDone := make(chan struct{})
	var attackErr error
	go func() { attackErr = cmd.Wait(); close(attackDone) }()
	t.Cleanup(func() {
		select {
		case <-attackDone:
		default:
			cmd.Process.Kill()
			<-attackDone
		}
	})

	// Normal clients, until the attack ends.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var ok, failed int
	var firstErr error
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-attackDone:
			break loop
		case <-tick.C:
		}
		resp, err := hc.Get(url)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != 200 || string(body) != "b") {
				err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
			}
		}
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ok++
	}
	if attackErr != nil {
		t.Fatalf("slowhttptest: %v\n%s", attackErr, out.String())
	}
	if n := tracker.accepted.Load(); n < conns {
		t.Fatalf("the server accepted %d connections; slowhttptest was to open %d\n%s", n, conns, out.String())
	}
	if failed > 0 || ok == 0 {
		t.Errorf("normal requests during the attack: %d answered, %d failed (first: %v)", ok, failed, firstErr)
	}
	// slowhttptest has closed its side; whatever the server still holds
	// must be young.
	old, open := tracker.openOlderThan(bound)
	tracker.mu.Lock()
	tooLong, longest := tracker.tooLong, tracker.longest
	tracker.mu.Unlock()
	if tooLong > 0 || old > 0 {
		t.Errorf("%d connections were closed and %d are still open after more than %v (the longest lived %v)", tooLong, old, bound, longest)
	}
	t.Logf("%d connections accepted, %d open at the end, the longest lived %v; %d normal requests answered",
		tracker.accepted.Load(), open, longest.Round(time.Millisecond), ok)
}
