package gate

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/internal/stats"
	"github.com/sluicegw/sluice/pipeline"
)

const (
	// MaxTopPathLength is the most bytes of a request path a server's top
	// paths keep; a longer path is cut (at a character boundary) and
	// counted with the others that begin the same.
	MaxTopPathLength = 128
	// TopPathsCapacity is the number of distinct paths a server's top
	// paths track; their memory is bounded by TopPathsCapacity ×
	// MaxTopPathLength.
	TopPathsCapacity = 1024
)

// observer is what a Server does around each request beyond routing it:
// statistics (EnableStats) and explaining (Spec.Explain). A Server without
// either has a nil observer and pays one nil check per request.
type observer struct {
	logger *slog.Logger
	clk    clock.Clock
	st     *serverStats           // nil without stats; shared by the generations
	routes [][]*routeStats        // [rule][path]; nil without stats
	byKey  map[string]*routeStats // the routes by routeKey
	header string                 // the explain header; "" when explaining is off
	pool   sync.Pool              // *statsWriter
	id     *identity              // for explains
}

// serverStats are a server's recorders, shared by its generations.
type serverStats struct {
	rec      *stats.Recorder
	top      *stats.TopN
	inflight atomic.Int64
}

// routeStats are one route's recorder, kept across generations while the
// route keeps its place in the rules and its backend.
type routeStats struct {
	name, backend string
	rec           *stats.Recorder
	inflight      atomic.Int64
}

func routeKey(name, backend string) string { return name + "\x00" + backend }

// newObserver returns the observer of a server with spec, or nil when
// explaining is off (EnableStats may add one later).
func newObserver(spec *Spec, logger *slog.Logger, id *identity) *observer {
	h := spec.Explain.header()
	if h == "" {
		return nil
	}
	return &observer{logger: logger, clk: clock.Real(), header: h, id: id}
}

// EnableStats makes s keep statistics (see Stats): the server's, each
// route's and the server's most requested paths, reading the time from c
// (nil: the system clock). Call it after New and before Inherit and Serve:
// Inherit then carries the figures over from the previous generation.
// Recording takes no lock but the top paths' (one shard's, briefly) and
// does not allocate for a path already tracked.
func (s *Server) EnableStats(c pipeline.Clock) {
	if c == nil {
		c = clock.Real()
	}
	if s.obs == nil {
		s.obs = &observer{logger: s.logger, id: &s.id}
	}
	o := s.obs
	o.clk = c
	top, err := stats.NewTopN(TopPathsCapacity)
	if err != nil {
		panic("gate: " + err.Error()) // a constant capacity within range
	}
	o.st = &serverStats{rec: stats.New(c), top: top}
	o.byKey = map[string]*routeStats{}
	o.routes = make([][]*routeStats, len(s.spec.Rules))
	for i, r := range s.spec.Rules {
		o.routes[i] = make([]*routeStats, len(r.Paths))
		for j, p := range r.Paths {
			rs := &routeStats{name: routeName(i, j), backend: p.Backend, rec: stats.New(c)}
			o.routes[i][j] = rs
			o.byKey[routeKey(rs.name, rs.backend)] = rs
		}
	}
}

// routeName is the name of path j of rule i, as the access log shows it.
func routeName(i, j int) string {
	return "rules[" + strconv.Itoa(i) + "].paths[" + strconv.Itoa(j) + "]"
}

// inherit takes prev's recorders: the server's and its top paths, and
// those of the routes with the same name and backend.
func (o *observer) inherit(prev *observer) {
	if o == nil || o.st == nil || prev == nil || prev.st == nil {
		return
	}
	o.st = prev.st
	for i, rr := range o.routes {
		for j, rs := range rr {
			k := routeKey(rs.name, rs.backend)
			if p, ok := prev.byKey[k]; ok {
				o.routes[i][j] = p
				o.byKey[k] = p
			}
		}
	}
}

// begin starts observing a request: it returns the writer the request is
// served with. ri is the request's info; trusted tells whether the peer is
// a trusted proxy.
func (o *observer) begin(w http.ResponseWriter, r *http.Request, ri *pipeline.RequestInfo, peer netip.Addr) *statsWriter {
	sw, _ := o.pool.Get().(*statsWriter)
	if sw == nil {
		sw = new(statsWriter)
	}
	sw.ResponseWriter = w
	sw.start = o.clk.Now()
	if o.st != nil {
		o.st.inflight.Add(1)
	}
	if o.header != "" {
		if _, asked := r.Header[o.header]; asked && o.explains(o.id, peer, ri.ClientIP) {
			r.Header.Del(o.header)
			sw.explain = &pipeline.Explain{Header: o.header}
			ri.Explain = sw.explain
		}
	}
	return sw
}

// routed notes the route rt (nil: none) that the request to path took.
// w is the writer begin returned, or the access log's around it.
func (o *observer) routed(w http.ResponseWriter, rt *route, path string) {
	if o == nil {
		return
	}
	sw := findStatsWriter(w)
	if sw == nil {
		return
	}
	if o.st != nil {
		o.st.top.Add(capPath(path))
		if rt != nil && rt.rule < len(o.routes) && rt.index < len(o.routes[rt.rule]) {
			rs := o.routes[rt.rule][rt.index]
			rs.inflight.Add(1)
			sw.route = rs
		}
	}
	if sw.explain != nil {
		if rt != nil {
			sw.explain.SetRoute(rt.name, rt.backend)
		}
		// The gate's own answers (404, 403, 413, 503) carry the route;
		// a pipeline replaces it with the whole account.
		sw.Header().Set(o.header, sw.explain.String())
	}
}

// end records the request served with sw and recycles sw.
func (o *observer) end(sw *statsWriter, r *http.Request) {
	status := sw.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	now := o.clk.Now()
	took := now.Sub(sw.start)
	if o.st != nil {
		var reqBytes int64
		if r.ContentLength > 0 {
			reqBytes = r.ContentLength
		}
		o.st.rec.RecordAt(now, status, took, reqBytes, sw.bytes)
		o.st.inflight.Add(-1)
		if rs := sw.route; rs != nil {
			rs.rec.RecordAt(now, status, took, reqBytes, sw.bytes)
			rs.inflight.Add(-1)
		}
	}
	if sw.explain != nil {
		o.logger.Info("explain", "method", r.Method, "path", capPath(r.URL.Path), "status", status,
			"took", took, "requestID", pipeline.RequestID(r), "explain", sw.explain.String())
	}
	*sw = statsWriter{}
	o.pool.Put(sw)
}

// capPath cuts path to MaxTopPathLength bytes at a character boundary.
func capPath(path string) string {
	if len(path) <= MaxTopPathLength {
		return path
	}
	n := MaxTopPathLength
	for n > 0 && !utf8.RuneStart(path[n]) {
		n--
	}
	return path[:n]
}

// statsWriter records the status and the body size of a response, as the
// access log's loggingWriter does, plus what the statistics need. It is
// pooled: nothing may keep it after the request.
type statsWriter struct {
	loggingWriter
	start   time.Time
	route   *routeStats
	explain *pipeline.Explain
}

func findStatsWriter(w http.ResponseWriter) *statsWriter {
	switch v := w.(type) {
	case *statsWriter:
		return v
	case *loggingWriter:
		sw, _ := v.ResponseWriter.(*statsWriter)
		return sw
	}
	return nil
}

// ServerStats are an HTTPServer's statistics.
type ServerStats struct {
	// Server covers every request the server answered, routed or not:
	// status, time from routing to the response written, request size
	// (its Content-Length) and response body bytes written.
	Server pipeline.StatsSnapshot `json:"server" yaml:"server"`
	// InFlight is the number of requests being served.
	InFlight int64 `json:"inFlight" yaml:"inFlight"`
	// TopPaths are the most requested paths (at most 20, each cut to
	// MaxTopPathLength bytes), counted with the Space-Saving algorithm:
	// a count may exceed the true one by its Error.
	TopPaths []pipeline.TopItem `json:"topPaths,omitempty" yaml:"topPaths,omitempty"`
	// Routes are the rules' paths, in the order of the spec.
	Routes []RouteStats `json:"routes,omitempty" yaml:"routes,omitempty"`
}

// RouteStats are one route's statistics.
type RouteStats struct {
	// Name is the route's place in the spec: "rules[0].paths[1]".
	Name string `json:"name" yaml:"name"`
	// Backend is the route's backend pipeline.
	Backend string `json:"backend" yaml:"backend"`
	// InFlight is the number of requests being served on the route.
	InFlight int64                  `json:"inFlight" yaml:"inFlight"`
	Stats    pipeline.StatsSnapshot `json:"stats" yaml:"stats"`
}

// topPathsShown is how many top paths Stats reports.
const topPathsShown = 20

// Stats returns the server's statistics; ok is false without EnableStats.
func (s *Server) Stats() (st ServerStats, ok bool) {
	o := s.obs
	if o == nil || o.st == nil {
		return ServerStats{}, false
	}
	now := o.clk.Now()
	st.Server = o.st.rec.Snapshot(now)
	st.InFlight = o.st.inflight.Load()
	st.TopPaths = o.st.top.Top(topPathsShown)
	for _, rr := range o.routes {
		for _, rs := range rr {
			st.Routes = append(st.Routes, RouteStats{Name: rs.name, Backend: rs.backend, InFlight: rs.inflight.Load(), Stats: rs.rec.Snapshot(now)})
		}
	}
	return st, true
}

// StatsSources hands the server's recorders to fn, for metrics exporters:
// the server's own with route "", then each route's, with the requests in
// flight. It does nothing without EnableStats.
func (s *Server) StatsSources(fn func(route, backend string, r *pipeline.Recorder, inFlight int64)) {
	o := s.obs
	if o == nil || o.st == nil {
		return
	}
	fn("", "", o.st.rec, o.st.inflight.Load())
	for _, rr := range o.routes {
		for _, rs := range rr {
			fn(rs.name, rs.backend, rs.rec, rs.inflight.Load())
		}
	}
}

// statsPtr returns Stats for Status, nil without them.
func (s *Server) statsPtr() *ServerStats {
	if st, ok := s.Stats(); ok {
		return &st
	}
	return nil
}
