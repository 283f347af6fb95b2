package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customcontroller/statusinlocal"
	"github.com/sluicegw/sluice/gate"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServe runs the program's config as main does, with a free loopback
// port, a file in a temporary directory and a fake clock. The report
// written at start holds every object; after a real request and one
// interval, the next report has the HeaderCounter's count. Cancelling the
// context (what SIGINT does) stops everything, the controller included.
func TestServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "running_status.yaml")
	cfg := strings.NewReplacer("port: 10082", "port: 0", "./running_status.yaml", path).Replace(config)
	start := time.Unix(1_700_000_000, 0)
	clk := filtertest.NewFakeClock(start)
	g, err := newGateway(cfg, sluice.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, g) }()

	waitIdle(t, clk)
	r := readReport(t, path)
	var names []string
	for _, o := range r.Objects {
		names = append(names, o.Kind+"/"+o.Name)
	}
	want := "Pipeline/counted HTTPServer/server StatusInLocalController/status-in-local"
	if got := strings.Join(names, " "); got != want || r.Timestamp != start.Unix() {
		t.Errorf("report at %d with %s, want %d with %s", r.Timestamp, got, start.Unix(), want)
	}

	get(t, "http://"+serverAddr(t, g)+"/", "Cookie", "id=1")
	clk.Advance(5 * time.Second)
	waitIdle(t, clk)
	r = readReport(t, path)
	if r.Timestamp != start.Unix()+5 {
		t.Errorf("timestamp %d, want %d", r.Timestamp, start.Unix()+5)
	}
	for _, o := range r.Objects {
		if o.Name != "counted" {
			continue
		}
		counts := o.Status.(map[string]any)["filters"].(map[string]any)["headerCounter"].(map[string]any)["counts"]
		if c := counts.(map[string]any); c["Cookie"] != 1 || c["Authorization"] != 0 {
			t.Errorf("counts in the report: %v, want Cookie 1, Authorization 0", c)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after its context was cancelled")
	}
}

// waitIdle waits until the controller has written a report and waits on
// the clock for the next.
func waitIdle(t *testing.T, clk *filtertest.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the controller did not write its report")
		}
		time.Sleep(time.Millisecond)
	}
}

func readReport(t *testing.T, path string) statusinlocal.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r statusinlocal.Report
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	return r
}

func serverAddr(t *testing.T, g *sluice.Gateway) string {
	t.Helper()
	for _, o := range g.Status().Objects {
		if st, ok := o.Status.(gate.Status); ok && st.Address != "" {
			return st.Address
		}
	}
	t.Fatal("the server reports no address")
	return ""
}

func get(t *testing.T, url, header, value string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(header, value)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "counted" {
		t.Errorf("GET %s: %d %q, want 200 \"counted\"", url, resp.StatusCode, b)
	}
}
