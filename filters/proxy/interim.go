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
	if !takesInterim(in) {
		return nil
	}
	it := &interim{c: c}
	it.trace.Got1xxResponse = it.got1xx
	return it
}

func (it *interim) got1xx(code int, h textproto.MIMEHeader) error {
	it.mu.Lock()
	defer it.mu.Unlock()
	if !it.done {
		forwardInterim(it.c, code, http.Header(h))
	}
	return nil
}

// stop ends the forwarding; it waits for one under way.
func (it *interim) stop() {
	it.mu.Lock()
	it.done = true
	it.mu.Unlock()
}

// roundTrip sends out with the exchange's transport, passing the
// informational responses of the server on to the client unless the
// request is an Upgrade. The lean HTTP/1.1 transport reads them on this
// goroutine and hands them over directly; any other transport reports
// them through an httptrace.ClientTrace.
func (x *exchange) roundTrip(out *http.Request) (*http.Response, error) {
	if h1, ok := x.rt.(*h1Transport); ok && h1.serves(out) {
		var c *pipeline.Context
		if !x.upgrade && takesInterim(x.in) {
			c = x.c
		}
		return h1.roundTripWith(out, c)
	}
	if x.upgrade {
		return x.rt.RoundTrip(out)
	}
	it := newInterim(x.c, x.in)
	if it == nil {
		return x.rt.RoundTrip(out)
	}
	defer it.stop()
	return x.rt.RoundTrip(out.WithContext(httptrace.WithClientTrace(out.Context(), &it.trace)))
}

// takesInterim reports whether the client of in can take informational
// responses: not an HTTP/1.0 one.
func takesInterim(in *http.Request) bool {
	return !(in.ProtoMajor == 1 && in.ProtoMinor == 0)
}

// forwardInterim writes an informational response to c's client, without
// its hop-by-hop headers. 101 is never forwarded: a switch is a final
// answer.
func forwardInterim(c *pipeline.Context, code int, h http.Header) {
	if code == http.StatusSwitchingProtocols {
		return
	}
	hdr := h.Clone()
	httpx.RemoveHopByHop(hdr)
	c.WriteInterim(code, hdr)
}
