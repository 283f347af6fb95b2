package proxy

import (
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
	inflight atomic.Int64  // leastRequest and ewma: attempts chosen and not Done
	ewma     atomic.Uint64 // ewma: the peak-EWMA latency in ns, float64 bits; 0: no sample
	ewmaAt   atomic.Int64  // ewma: the time of the last sample, Unix ns
	ewmaMu   sync.Mutex    // serialises ewma updates
	_        [64]byte      // keep the next server's counters off these cache lines
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

// ServerStatus is one server's counters.
type ServerStatus struct {
	URL string `json:"url" yaml:"url"`
	// Requests counts the attempts sent to the server, retries included.
	Requests uint64 `json:"requests" yaml:"requests"`
	// Errors counts the attempts the server failed: connection errors,
	// timeouts and responses with a failure code.
	Errors uint64 `json:"errors" yaml:"errors"`
}

func (s *Server) status() ServerStatus {
	return ServerStatus{URL: s.url, Requests: s.stats.requests.Load(), Errors: s.stats.errors.Load()}
}
