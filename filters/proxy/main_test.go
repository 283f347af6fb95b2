package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// Proxy closed must have closed its idle upstream connections.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
