package eureka_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a
// registry's client must be closed with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
