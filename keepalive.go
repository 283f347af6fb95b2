package sluice

import (
	"context"
	"sync"
)

// keepAliveCloser is a gate whose keep-alive connections can be ended
// gracefully before a drain (see CloseKeepAlives).
type keepAliveCloser interface {
	CloseKeepAlives(ctx context.Context)
}

// CloseKeepAlives prepares a drain: every HTTPServer answers each HTTP/1.x
// request with Connection: close from now on, so that every keep-alive
// connection ends after its next exchange instead of being closed under a
// request the client may be sending (Shutdown closes idle connections at
// once). It returns when no connection is left or ctx ends; give it a
// short grace (a second or two) before Shutdown or a hot upgrade's drain.
func (g *Gateway) CloseKeepAlives(ctx context.Context) {
	g.mu.Lock()
	var gates []keepAliveCloser
	for _, e := range g.sortedEntries(false) {
		if k, ok := e.obj.(keepAliveCloser); ok {
			gates = append(gates, k)
		}
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range gates {
		wg.Go(func() { k.CloseKeepAlives(ctx) })
	}
	wg.Wait()
}
