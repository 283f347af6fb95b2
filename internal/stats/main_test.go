package stats_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that nothing in the package leaves a goroutine behind:
// Recorders tick lazily and start none.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
