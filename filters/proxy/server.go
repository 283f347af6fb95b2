package proxy

import (
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Server is one server of a pool, built from a ServerSpec. It is immutable
// and shared by every request; only its counters change, atomically.
type Server struct {
	url      string // as configured
	scheme   string
	host     string // host[:port]
	path     string // path prefix; "" or "/" means none
	rawPath  string // escaped path prefix when it differs from path's default
	escPath  string // escaped path prefix
	weight   int
	tags     []string
	keepHost bool
	id       string // names the server in sticky-session cookies: a hash of url
	idx      int    // the server's index in its pool

	stats *serverStats // shared with the previous generation after Inherit
}

// serverStats are a server's counters and the load-balancing state that
// follows the server across generations (attempts in flight, the ewma
// latency). They live behind a pointer so that a new generation of the
// Proxy can keep counting where the old one left off, and attempts of the
// old generation still in flight are counted out of the same counter.
type serverStats struct {
	requests atomic.Uint64
	errors   atomic.Uint64
	rec      *pipeline.Recorder // nil without pipeline.Env.Stats (see stats.go)
	inflight atomic.Int64       // leastRequest and ewma: attempts chosen and not Done
	ewma     atomic.Uint64      // ewma: the peak-EWMA latency in ns, float64 bits; 0: no sample
	ewmaAt   atomic.Int64       // ewma: the time of the last sample, Unix ns
	ewmaMu   sync.Mutex         // serialises ewma updates

	// Health: health is 0 while the server may take requests, has bit
	// healthDown while it fails its active checks, and holds the end of an
	// ejection otherwise (see available). The rest is bookkeeping.
	health      atomic.Uint64
	consec5xx   atomic.Int32  // outlier detection: 5xx responses in a row
	consecConn  atomic.Int32  // outlier detection: attempts without a response in a row
	checks      atomic.Uint64 // active checks done
	healthMu    sync.Mutex    // serialises the active checks' bookkeeping
	checkFails  int           // failed checks in a row, under healthMu
	checkPasses int           // passed checks in a row, under healthMu
	tlsLogNext  atomic.Int64  // when a verification failure may next be logged at Warn, Unix ns
	_           [64]byte      // keep the next server's counters off these cache lines
}

func newServer(spec ServerSpec) (*Server, error) {
	u, err := parseServerURL(spec.URL)
	if err != nil {
		return nil, err
	}
	s := &Server{
		url:      spec.URL,
		scheme:   u.Scheme,
		host:     u.Host,
		path:     u.Path,
		weight:   spec.Weight,
		tags:     slices.Clone(spec.Tags),
		keepHost: spec.KeepHost,
		id:       strconv.FormatUint(hashString(spec.URL), 16),
		stats:    new(serverStats),
	}
	if s.path == "/" {
		s.path = ""
	}
	if u.RawPath != "" {
		s.rawPath = u.EscapedPath()
	}
	s.escPath = (&url.URL{Path: s.path, RawPath: s.rawPath}).EscapedPath()
	return s, nil
}

// URL returns the server's URL as configured.
func (s *Server) URL() string { return s.url }

// Weight returns the server's weight.
func (s *Server) Weight() int { return s.weight }

// Tags returns a copy of the server's tags.
func (s *Server) Tags() []string { return slices.Clone(s.tags) }

// KeepHost reports whether requests keep the client's Host header.
func (s *Server) KeepHost() bool { return s.keepHost }

// ServerStatus is one server's counters and health.
type ServerStatus struct {
	URL string `json:"url" yaml:"url"`
	// Requests counts the attempts sent to the server, retries included.
	Requests uint64 `json:"requests" yaml:"requests"`
	// Errors counts the attempts the server failed: connection errors,
	// timeouts and responses with a failure code.
	Errors uint64 `json:"errors" yaml:"errors"`
	// Healthy is false while the server fails its pool's active health
	// checks; always true without them.
	Healthy bool `json:"healthy" yaml:"healthy"`
	// Ejected is true while outlier detection has the server ejected.
	Ejected bool `json:"ejected,omitempty" yaml:"ejected,omitempty"`
	// Checks counts the active health checks of the server.
	Checks uint64 `json:"checks,omitempty" yaml:"checks,omitempty"`
	// Stats time the attempts sent to the server, from sending to the
	// response's headers, by the status it answered (502 or 504 when it
	// failed to); absent when the pipeline keeps no stats.
	Stats *pipeline.StatsSnapshot `json:"stats,omitempty" yaml:"stats,omitempty"`
}

// status is s's status at now.
func (s *Server) status(now time.Time) ServerStatus {
	st := s.stats
	ss := ServerStatus{
		URL:      s.url,
		Requests: st.requests.Load(),
		Errors:   st.errors.Load(),
		Healthy:  st.health.Load()&healthDown == 0,
		Ejected:  st.ejected(now),
		Checks:   st.checks.Load(),
	}
	if st.rec != nil {
		snap := st.rec.Snapshot(now)
		ss.Stats = &snap
	}
	return ss
}
