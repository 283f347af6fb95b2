package proxy

import (
	"io"
	"net/http"
	"sync"
)

// tunnels are the upgraded connections (101 Switching Protocols) of a
// Proxy's requests that are still open. The pipeline joins each to its
// client's connection and closes it when either side ends; closing the
// Proxy closes those still open, which ends the join, so that a gateway's
// shutdown does not wait on WebSockets forever.
type tunnels struct {
	mu     sync.Mutex
	open   map[*tunnel]struct{}
	closed bool
}

// track wraps resp's body, an upgraded connection, so that closeAll can
// close it. After closeAll the connection is closed at once.
func (ts *tunnels) track(resp *http.Response) {
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return
	}
	t := &tunnel{ReadWriteCloser: rwc, set: ts}
	ts.mu.Lock()
	if ts.closed {
		ts.mu.Unlock()
		rwc.Close()
	} else {
		if ts.open == nil {
			ts.open = map[*tunnel]struct{}{}
		}
		ts.open[t] = struct{}{}
		ts.mu.Unlock()
	}
	resp.Body = t
}

// closeAll closes every open tunnel, and those tracked later.
func (ts *tunnels) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	open := ts.open
	ts.open = nil
	ts.mu.Unlock()
	for t := range open {
		t.Close()
	}
}

// count returns the number of open tunnels.
func (ts *tunnels) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.open)
}

// tunnel is an upgraded connection that leaves its set when closed.
type tunnel struct {
	io.ReadWriteCloser
	set  *tunnels
	once sync.Once
	err  error
}

func (t *tunnel) Close() error {
	t.once.Do(func() {
		t.set.mu.Lock()
		delete(t.set.open, t)
		t.set.mu.Unlock()
		t.err = t.ReadWriteCloser.Close()
	})
	return t.err
}

var _ io.ReadWriteCloser = (*tunnel)(nil)
