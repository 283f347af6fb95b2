package statusinlocal_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customcontroller/statusinlocal"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// Every test leaves no goroutine behind: controllers' Run returns on
// Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start is the fake clock's start: timestamps in reports are exact.
var start = time.Unix(1_700_000_000, 0)

const objectsYAML = `
kind: HTTPServer
name: server
address: 127.0.0.1
port: 0
rules:
  - paths:
    - backend: pipeline
---
kind: Pipeline
name: pipeline
filters: []
`

func controllerYAML(path string) string {
	return "kind: StatusInLocalController\nname: status\npath: " + path + "\ninterval: 5s\n"
}

// newGateway returns a gateway that knows the controller kind, runs on a
// fake clock, and is shut down when the test ends.
func newGateway(t *testing.T) (*sluice.Gateway, *filtertest.FakeClock) {
	t.Helper()
	clk := filtertest.NewFakeClock(start)
	g, err := sluice.New(sluice.WithObjectKinds(statusinlocal.Kind), sluice.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, g) })
	return g, clk
}

// shutdown shuts g down, failing the test rather than hanging if it
// deadlocks.
func shutdown(t *testing.T, g *sluice.Gateway) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown hung")
	}
}

func apply(t *testing.T, g *sluice.Gateway, y string) {
	t.Helper()
	if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
		t.Fatal(err)
	}
}

// waitIdle waits until exactly one goroutine waits on the fake clock: the
// controller's Run, which has finished a write and armed its timer. Nothing
// else in these gateways uses the clock.
func waitIdle(t *testing.T, clk *filtertest.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers pending on the clock, want 1", clk.Waiters())
		}
		time.Sleep(time.Millisecond)
	}
}

// tick advances the clock one interval and waits for the write it causes.
func tick(t *testing.T, clk *filtertest.FakeClock) {
	t.Helper()
	clk.Advance(5 * time.Second)
	waitIdle(t, clk)
}

func readReport(t *testing.T, path string) statusinlocal.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r statusinlocal.Report
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatalf("the report is not YAML: %v\n%s", err, b)
	}
	return r
}

func object(r statusinlocal.Report, name string) (sluice.ObjectStatus, bool) {
	for _, o := range r.Objects {
		if o.Name == name {
			return o, true
		}
	}
	return sluice.ObjectStatus{}, false
}

// field returns the value at a path of keys in a status parsed from YAML.
func field(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestReport starts a real gateway and checks the file after the first
// write and after one interval: it holds every object, the live status of
// each, and the fake clock's time.
func TestReport(t *testing.T) {
	g, clk := newGateway(t)
	path := filepath.Join(t.TempDir(), "status.yaml")
	apply(t, g, objectsYAML+"---\n"+controllerYAML(path))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	waitIdle(t, clk) // the write at start
	r := readReport(t, path)
	if r.Timestamp != start.Unix() {
		t.Errorf("timestamp %d, want %d", r.Timestamp, start.Unix())
	}
	if r.Revision == 0 {
		t.Error("revision 0, want the gateway's")
	}
	want := map[string]string{"pipeline": "Pipeline", "server": "HTTPServer", "status": "StatusInLocalController"}
	if len(r.Objects) != len(want) {
		t.Errorf("%d objects in the report, want %d: %+v", len(r.Objects), len(want), r.Objects)
	}
	for name, kind := range want {
		if o, ok := object(r, name); !ok || o.Kind != kind {
			t.Errorf("object %q: %+v, want kind %s", name, o, kind)
		}
	}
	if o, _ := object(r, "server"); field(o.Status, "address") == nil {
		t.Errorf("server status %v has no address", o.Status)
	}

	// A request through the gateway shows up in the next report.
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	tick(t, clk)
	r = readReport(t, path)
	if r.Timestamp != start.Unix()+5 {
		t.Errorf("timestamp %d, want %d", r.Timestamp, start.Unix()+5)
	}
	if o, _ := object(r, "pipeline"); field(o.Status, "requests") != 1 {
		t.Errorf("pipeline status %v, want requests: 1", o.Status)
	}
	// The controller reports on itself too: one write before this report.
	if o, _ := object(r, "status"); field(o.Status, "writes") != 1 || field(o.Status, "path") != path {
		t.Errorf("controller status %v, want writes: 1 and path %s", o.Status, path)
	}

	// No temporary file is left next to the report.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the report", len(entries))
	}
}

// TestUpdatePath applies the controller again with another path: the new
// one is written at once, and the old controller's Run has stopped (its file
// no longer changes, and only one Run waits on the clock).
func TestUpdatePath(t *testing.T) {
	g, clk := newGateway(t)
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	apply(t, g, objectsYAML+"---\n"+controllerYAML(oldPath))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, clk)
	tick(t, clk)

	apply(t, g, controllerYAML(newPath))
	// The new Run starts once the old one has returned: wait for its
	// first write, then for it to wait on the clock.
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(newPath); err != nil; _, err = os.Stat(newPath) {
		if time.Now().After(deadline) {
			t.Fatal("the new controller never wrote its file")
		}
		time.Sleep(time.Millisecond)
	}
	waitIdle(t, clk)
	oldReport, err := os.ReadFile(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	if r := readReport(t, newPath); r.Timestamp != start.Unix()+5 {
		t.Errorf("new file written at %d, want %d (at once)", r.Timestamp, start.Unix()+5)
	}

	tick(t, clk)
	if r := readReport(t, newPath); r.Timestamp != start.Unix()+10 {
		t.Errorf("new file timestamp %d after an interval, want %d", r.Timestamp, start.Unix()+10)
	}
	if b, _ := os.ReadFile(oldPath); !bytes.Equal(b, oldReport) {
		t.Error("the old file changed after the update: the old controller still runs")
	}
	if n := clk.Waiters(); n != 1 {
		t.Errorf("%d timers pending, want 1: the old Run did not stop", n)
	}
	if sp, ok := g.Get("StatusInLocalController", "status"); !ok || !strings.Contains(string(sp.YAML()), newPath) {
		t.Errorf("running spec %s, want path %s", sp.YAML(), newPath)
	}
}

// TestWriteError: a write that fails is reported in the controller's
// status, and Run goes on; the next write that can succeed does.
func TestWriteError(t *testing.T) {
	g, clk := newGateway(t)
	dir := filepath.Join(t.TempDir(), "reports")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "status.yaml")
	apply(t, g, controllerYAML(path))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, clk)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	tick(t, clk)
	st := controllerStatus(t, g)
	if st.LastError == "" || st.Writes != 1 || st.LastWrite != start.Unix() {
		t.Errorf("after a failed write: %+v, want lastError set, writes 1, lastWrite %d", st, start.Unix())
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tick(t, clk)
	if st := controllerStatus(t, g); st.LastError != "" || st.Writes != 2 {
		t.Errorf("after the directory is back: %+v, want no error and 2 writes", st)
	}
	if r := readReport(t, path); r.Timestamp != start.Unix()+10 {
		t.Errorf("timestamp %d, want %d", r.Timestamp, start.Unix()+10)
	}
}

func controllerStatus(t *testing.T, g *sluice.Gateway) statusinlocal.Status {
	t.Helper()
	for _, o := range g.Status().Objects {
		if st, ok := o.Status.(statusinlocal.Status); ok {
			return st
		}
	}
	t.Fatal("no controller in the gateway's status")
	return statusinlocal.Status{}
}

// TestBadSpec: bad specs fail the apply with an error naming the object,
// the field and its line, and nothing is created.
func TestBadSpec(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		body  string // after kind and name (lines 1 and 2)
		field string
		line  int
		is    error
	}{
		{"missing path", "interval: 5s\n", "path", 1, statusinlocal.ErrNoPath},
		{"unknown field", "path: " + dir + "/s.yaml\npth: s.yaml\n", "pth", 4, pipeline.ErrUnknownField},
		{"interval without unit", "path: " + dir + "/s.yaml\ninterval: 5\n", "interval", 4, nil},
		{"interval too short", "path: " + dir + "/s.yaml\ninterval: 1ms\n", "interval", 4, statusinlocal.ErrInterval},
		{"interval not a duration", "path: " + dir + "/s.yaml\ninterval: soon\n", "interval", 4, nil},
		{"no such directory", "interval: 5s\npath: " + dir + "/nope/s.yaml\n", "path", 4, statusinlocal.ErrNoDir},
		{"directory is a file", "path: " + file + "/s.yaml\n", "path", 3, statusinlocal.ErrNoDir},
	}
	g, _ := newGateway(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "kind: StatusInLocalController\nname: status\n" + tt.body
			err := g.ApplyYAML(context.Background(), strings.NewReader(y))
			var oe *sluice.ObjectError
			if !errors.As(err, &oe) {
				t.Fatalf("apply: %v, want an *sluice.ObjectError", err)
			}
			if oe.Kind != "StatusInLocalController" || oe.Name != "status" || oe.Field != tt.field || oe.Line != tt.line {
				t.Errorf("error names %s %q field %q line %d, want field %q line %d: %v", oe.Kind, oe.Name, oe.Field, oe.Line, tt.field, tt.line, err)
			}
			if !errors.Is(err, sluice.ErrBadSpec) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("error %v should wrap ErrBadSpec and %v", err, tt.is)
			}
			if _, ok := g.Get("", "status"); ok {
				t.Error("a bad spec created the object")
			}
		})
	}
}

// TestRunStopsOnShutdown: after Shutdown no goroutine of the controller is
// left, whether it was idle or writing.
func TestRunStopsOnShutdown(t *testing.T) {
	clk := filtertest.NewFakeClock(start)
	g, err := sluice.New(sluice.WithObjectKinds(statusinlocal.Kind), sluice.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, g, objectsYAML+"---\n"+controllerYAML(filepath.Join(t.TempDir(), "s.yaml")))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, clk)
	shutdown(t, g)
	if n := clk.Waiters(); n != 0 {
		t.Errorf("%d timers pending after Shutdown, want 0", n)
	}
	goleak.VerifyNone(t)
}

// TestShutdownRightAfterStart: Shutdown (or an update) right after Start,
// while Run is still making its first report, must not deadlock. See
// Controller.gatewayStatus for why this needs care.
func TestShutdownRightAfterStart(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		g, err := sluice.New(sluice.WithObjectKinds(statusinlocal.Kind), sluice.WithClock(filtertest.NewFakeClock(start)))
		if err != nil {
			t.Fatal(err)
		}
		apply(t, g, controllerYAML(filepath.Join(dir, "a.yaml")))
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			apply(t, g, controllerYAML(filepath.Join(dir, "b.yaml")))
		}
		shutdown(t, g)
	}
	goleak.VerifyNone(t)
}
