package proxy

import (
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"

	"github.com/sluicegw/sluice/internal/httpx"
	"github.com/sluicegw/sluice/pipeline"
)

// interim passes the informational responses (100 Continue, 103 Early
// Hints, …) a server sends before its final response on to the client,
// through pipeline.Context.WriteInterim. The transport reports them from
// its own goroutine while the attempt waits in RoundTrip; stop, called
// when RoundTrip returns, makes sure none is written after that, when the
// final response may be on its way.
type interim struct {
	c     *pipeline.Context
	mu    sync.Mutex
	done  bool
	trace httptrace.ClientTrace
}

// newInterim returns the interim forwarder of an attempt of in, or nil
// when in's client cannot take informational responses (HTTP/1.0).
func newInterim(c *pipeline.Context, in *http.Request) *interim {
	if in.ProtoMajor == 1 && in.ProtoMinor == 0 {
		return nil
	}
	it := &interim{c: c}
	it.trace.Got1xxResponse = it.got1xx
	return it
}

func (it *interim) got1xx(code int, h textproto.MIMEHeader) error {
	if code == http.StatusSwitchingProtocols {
		return nil
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if !it.done {
		hdr := http.Header(h).Clone()
		httpx.RemoveHopByHop(hdr)
		it.c.WriteInterim(code, hdr)
	}
	return nil
}

// stop ends the forwarding; it waits for one under way.
func (it *interim) stop() {
	it.mu.Lock()
	it.done = true
	it.mu.Unlock()
}
