package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// mirror sends copies of requests to the mirror pool, on workers of its
// own, off the main path: a copy waits in a bounded queue and is dropped
// when the queue is full, so the main path never waits for the mirror.
//
// A copy of a request without a body is queued when Handle sees the
// request. A body is teed as the main path reads it, up to the pool's
// body limit; the copy is queued when the main path has read the body to
// its end, and dropped when the body was larger than the limit or was not
// read to its end. The workers start with the first copy and stop when
// the Proxy is closed; copies still queued then are dropped.
type mirror struct {
	pool    *Pool
	tr      *transport // the Proxy's, read when the workers start
	queue   chan *http.Request
	workers int
	maxBody int64 // -1: only requests without a body

	running atomic.Bool // the workers have started (read without mu)
	mu      sync.Mutex
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	stats mirrorStats
}

type mirrorStats struct {
	queued   atomic.Uint64
	sent     atomic.Uint64
	failed   atomic.Uint64
	dropped  atomic.Uint64 // the queue was full, or the Proxy closed
	tooLarge atomic.Uint64
}

// MirrorStatus counts the copies of a Proxy's mirror pool.
type MirrorStatus struct {
	// Queued counts the copies put in the queue, Sent those a server
	// answered, and Failed those that got no answer.
	Queued uint64 `json:"queued" yaml:"queued"`
	Sent   uint64 `json:"sent" yaml:"sent"`
	Failed uint64 `json:"failed" yaml:"failed"`
	// Dropped counts the copies lost because the queue was full (or the
	// Proxy was closing, or the main path did not read the whole body).
	Dropped uint64 `json:"dropped" yaml:"dropped"`
	// TooLarge counts the copies dropped because their body exceeded the
	// mirror pool's serverMaxBodySize.
	TooLarge uint64 `json:"tooLarge" yaml:"tooLarge"`
	// Pool is the mirror pool's status.
	Pool PoolStatus `json:"pool" yaml:"pool"`
}

func newMirror(env pipeline.Env, spec *Spec) (*mirror, error) {
	pool, err := newPool(env, "mirrorPool", spec.MirrorPool)
	if err != nil {
		return nil, err
	}
	m := &mirror{pool: pool, workers: spec.MirrorWorkers, maxBody: pool.maxBody}
	size := spec.MirrorQueueSize
	if size == 0 {
		size = DefaultMirrorQueueSize
	}
	if m.workers == 0 {
		m.workers = DefaultMirrorWorkers
	}
	m.queue = make(chan *http.Request, size)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// tee takes a copy of in for the mirror when the mirror pool's filter
// matches it, and returns the request the main path is to send: in
// itself, or a shallow copy whose body tees into the mirror's copy.
func (m *mirror) tee(in *http.Request) *http.Request {
	if m.pool.filter != nil && !m.pool.filter.match(in) {
		return in
	}
	if m.ctx.Err() != nil {
		return in
	}
	hasBody := in.Body != nil && in.Body != http.NoBody
	if hasBody && (m.maxBody < 0 || in.ContentLength > m.maxBody) {
		m.stats.tooLarge.Add(1)
		return in
	}
	cp := in.Clone(m.ctx)
	cp.Body, cp.GetBody, cp.ContentLength = nil, nil, 0
	if !hasBody {
		m.enqueue(cp)
		return in
	}
	out := *in
	out.Body = &teeBody{rc: in.Body, m: m, req: cp}
	return &out
}

// enqueue queues r without waiting, starting the workers first if need be.
func (m *mirror) enqueue(r *http.Request) {
	if !m.start() {
		m.stats.dropped.Add(1)
		return
	}
	select {
	case m.queue <- r:
		m.stats.queued.Add(1)
	default:
		m.stats.dropped.Add(1)
	}
}

// start starts the workers unless they run already; it reports false once
// the mirror is closed.
func (m *mirror) start() bool {
	if m.running.Load() {
		return m.ctx.Err() == nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	if !m.started {
		m.started = true
		rt := m.tr.roundTripper(m.pool.h2c)
		m.wg.Add(m.workers)
		for range m.workers {
			go m.work(rt)
		}
		m.running.Store(true)
	}
	return true
}

// close stops the workers and waits for them: a copy being sent is
// cancelled, queued copies are dropped.
func (m *mirror) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	for {
		select {
		case <-m.queue:
			m.stats.dropped.Add(1)
		default:
			return
		}
	}
}

func (m *mirror) work(rt http.RoundTripper) {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case r := <-m.queue:
			m.send(rt, r)
		}
	}
}

// send sends r, whose Body is nil or a buffered copy, to a server of the
// mirror pool and discards the answer.
func (m *mirror) send(rt http.RoundTripper, r *http.Request) {
	p := m.pool
	s := p.lb.Choose(r)
	if s == nil {
		m.stats.failed.Add(1)
		return
	}
	ctx := m.ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = resilience.WithTimeout(ctx, p.clock, p.timeout)
		defer cancel()
	}
	body := r.Body
	r.Body = nil
	out, _ := s.outbound(ctx, r)
	if b, ok := body.(*bufferedBody); ok {
		setBuffered(out, b.buf)
	}
	if p.upstreamHost != "" {
		out.Host = p.upstreamHost
	}
	s.stats.requests.Add(1)
	resp, err := rt.RoundTrip(out)
	if err != nil {
		s.stats.errors.Add(1)
		m.stats.failed.Add(1)
		return
	}
	io.CopyN(io.Discard, resp.Body, drainLimit)
	resp.Body.Close()
	m.stats.sent.Add(1)
}

func (m *mirror) status() *MirrorStatus {
	return &MirrorStatus{
		Queued:   m.stats.queued.Load(),
		Sent:     m.stats.sent.Load(),
		Failed:   m.stats.failed.Load(),
		Dropped:  m.stats.dropped.Load(),
		TooLarge: m.stats.tooLarge.Load(),
		Pool:     m.pool.status(),
	}
}

// bufferedBody is the body of a mirror copy: the bytes the main path read.
type bufferedBody struct {
	buf []byte
}

func (b *bufferedBody) Read([]byte) (int, error) { return 0, io.EOF }
func (b *bufferedBody) Close() error             { return nil }

// teeBody is the main path's request body with a copy for the mirror: the
// bytes read go to the main path and, up to the mirror's limit, into buf.
// The transport may close it while another of its goroutines reads.
type teeBody struct {
	rc  io.ReadCloser
	m   *mirror
	req *http.Request // the copy, queued at EOF

	mu   sync.Mutex
	buf  bytes.Buffer
	over bool // the body exceeded the limit: no copy
	done bool // the copy has been queued or dropped
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return n, err
	}
	if n > 0 && !t.over {
		if int64(t.buf.Len()+n) > t.m.maxBody {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	switch {
	case err == io.EOF && t.over:
		t.done = true
		t.m.stats.tooLarge.Add(1)
	case err == io.EOF:
		t.done = true
		t.req.Body = &bufferedBody{buf: t.buf.Bytes()}
		t.req.ContentLength = int64(t.buf.Len())
		t.m.enqueue(t.req)
	case err != nil:
		t.done = true
		t.m.stats.dropped.Add(1)
	}
	return n, err
}

// Close drops the copy unless the body was read to its end.
func (t *teeBody) Close() error {
	t.mu.Lock()
	if !t.done {
		t.done = true
		if t.over {
			t.m.stats.tooLarge.Add(1)
		} else {
			t.m.stats.dropped.Add(1)
		}
	}
	t.mu.Unlock()
	return t.rc.Close()
}

var (
	_ io.ReadCloser = (*teeBody)(nil)
	_ io.ReadCloser = (*bufferedBody)(nil)
)
