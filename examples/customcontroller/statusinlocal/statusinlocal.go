// Package statusinlocal is the StatusInLocalController of Easegress's
// developer guide, written the Sluice way: a controller object that writes
// the status of every object of its gateway to a local YAML file.
//
// # Model
//
//	kind: StatusInLocalController
//	name: status-in-local
//	path: ./running_status.yaml
//	interval: 5s
//
// A controller is an object with a Run method. The gateway calls Run in its
// own goroutine once the gateway has started and the object is live, and
// cancels Run's context when the object is updated, deleted or the gateway
// shuts down; Run returns then. Run writes the file at once, then every
// interval, until then. Each write replaces the file atomically (a temporary
// file in the same directory, renamed over it), so a reader never sees half
// a report:
//
//	timestamp: 1700000000   # Unix seconds, from the gateway's clock
//	revision: 3             # the gateway's store revision
//	objects:                # sluice.Gateway.Status: every object, by name
//	  - kind: HTTPServer
//	    name: server
//	    revision: 1
//	    status: {address: 127.0.0.1:10082, requests: 12, ...}
//	  - ...
//
// An update of the controller's own spec (a new path or interval) is a new
// object: the gateway stops the old Run, waits for it to return, then runs
// the new one, which writes to the new path at once. The old file is left
// as it was, with its last report.
//
// Time comes from the gateway's clock (sluice.WithClock), so a test
// advances a fake clock instead of sleeping.
//
// Register the kind with the gateway:
//
//	g, err := sluice.New(sluice.WithObjectKinds(statusinlocal.Kind))
package statusinlocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

// Kind is the StatusInLocalController object kind. It is a business
// controller: it starts after the objects it reports on and stops before
// them.
var Kind = sluice.DefineObject[Spec]("StatusInLocalController", sluice.CategoryBusiness,
	func(env sluice.Env, s *Spec) (sluice.Object, error) {
		c, err := New(env, s)
		if err != nil {
			return nil, err
		}
		return c, nil
	})

// Controller is a built StatusInLocalController.
type Controller struct {
	spec   Spec
	status func() sluice.Status // the gateway's Status
	clock  pipeline.Clock
	logger *slog.Logger

	writes    atomic.Int64
	lastWrite atomic.Int64 // Unix seconds of the last good write; 0: none yet
	lastErr   atomic.Pointer[string]
}

// Report is the content of the status file.
type Report struct {
	// Timestamp is when the report was made, in Unix seconds.
	Timestamp int64 `json:"timestamp" yaml:"timestamp"`
	// Revision is the gateway's store revision at that time.
	Revision int64 `json:"revision" yaml:"revision"`
	// Objects are the statuses of every object of the gateway, by name.
	Objects []sluice.ObjectStatus `json:"objects" yaml:"objects"`
}

// New builds a Controller from s, which it validates, for the gateway in
// env. The directory of s.Path must exist; the file need not.
func New(env sluice.Env, s *Spec) (*Controller, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if env.Gateway == nil {
		return nil, errors.New("statusinlocal: env has no gateway to report on")
	}
	dir := filepath.Dir(s.Path)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, pipeline.FieldErr("path", fmt.Errorf("%w: %s", ErrNoDir, dir))
	case err != nil:
		return nil, pipeline.FieldErr("path", err)
	case !fi.IsDir():
		return nil, pipeline.FieldErr("path", fmt.Errorf("%w: %s is a file", ErrNoDir, dir))
	}
	c := &Controller{spec: *s, status: env.Gateway.Status, clock: env.Clock, logger: env.Logger}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		return nil, errors.New("statusinlocal: env has no clock")
	}
	return c, nil
}

// Run writes the report at once and then every interval, until ctx is
// cancelled; then it returns nil. A failed write is logged and reported by
// Status (lastError), and Run carries on: the next write may succeed.
func (c *Controller) Run(ctx context.Context) error {
	for {
		c.write()
		t := c.clock.NewTimer(c.spec.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// write makes one report and writes it to the file.
func (c *Controller) write() {
	st := c.status()
	now := c.clock.Now().Unix()
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	err := enc.Encode(Report{Timestamp: now, Revision: st.Revision, Objects: st.Objects})
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = writeFileAtomic(c.spec.Path, b.Bytes())
	}
	if err != nil {
		msg := err.Error()
		c.lastErr.Store(&msg)
		c.logger.Warn("writing the status file", "path", c.spec.Path, "error", err)
		return
	}
	c.lastErr.Store(nil)
	c.lastWrite.Store(now)
	c.writes.Add(1)
}

// writeFileAtomic writes b to a temporary file in path's directory and
// renames it over path, so that readers see the old report or the new one,
// never a mix.
func writeFileAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Status is what Controller.Status reports.
type Status struct {
	Path string `json:"path" yaml:"path"`
	// Writes counts the reports written.
	Writes int64 `json:"writes" yaml:"writes"`
	// LastWrite is the timestamp of the last report written (Unix seconds);
	// 0 before the first.
	LastWrite int64 `json:"lastWrite" yaml:"lastWrite"`
	// LastError is why the last write failed; empty if it succeeded.
	LastError string `json:"lastError,omitempty" yaml:"lastError,omitempty"`
}

// Status reports the file written and how the writes went. It does not call
// the gateway, so it is safe to call from Gateway.Status.
func (c *Controller) Status() any {
	st := Status{Path: c.spec.Path, Writes: c.writes.Load(), LastWrite: c.lastWrite.Load()}
	if e := c.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Close releases nothing: Run owns the only goroutine, and the gateway
// cancels it before Close. The file stays.
func (c *Controller) Close() error { return nil }

var (
	_ sluice.Controller = (*Controller)(nil)
	_ sluice.Statuser   = (*Controller)(nil)
)

// interval bounds, see Spec.
const (
	defaultInterval = 5 * time.Second
	minInterval     = 100 * time.Millisecond
)
