package statusinlocal

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Errors of a bad Spec; Validate wraps them in a pipeline.FieldErr naming
// the field, so test with errors.Is.
var (
	// ErrNoPath: path is missing.
	ErrNoPath = errors.New("path is required")
	// ErrInterval: interval is shorter than 100ms.
	ErrInterval = errors.New("interval too short")
	// ErrNoDir: the directory of path does not exist (New checks it).
	ErrNoDir = errors.New("no such directory")
)

// Spec is the StatusInLocalController's configuration.
//
//	kind: StatusInLocalController
//	name: status-in-local
//	path: ./running_status.yaml
//	interval: 5s
type Spec struct {
	// Path is the file the report is written to. Required. A relative path
	// is relative to the process's working directory. The directory must
	// exist; the file is created or replaced.
	Path string `yaml:"path"`
	// Interval is the time between two reports. Default 5s, Easegress's
	// fixed period (this field is Sluice's addition); at least 100ms. Write
	// it with a unit: a bare number is nanoseconds.
	Interval time.Duration `yaml:"interval"`
}

// SetDefaults sets Interval to 5s.
func (s *Spec) SetDefaults() { s.Interval = defaultInterval }

// Validate checks that path is set and interval is at least 100ms.
func (s *Spec) Validate() error {
	if s.Path == "" {
		return pipeline.FieldErr("path", ErrNoPath)
	}
	if s.Interval < minInterval {
		return pipeline.FieldErr("interval", fmt.Errorf("%w: %v is below %v (write a unit, e.g. 5s)", ErrInterval, s.Interval, minInterval))
	}
	return nil
}

var (
	_ pipeline.Defaulter = (*Spec)(nil)
	_ pipeline.Validator = (*Spec)(nil)
)
