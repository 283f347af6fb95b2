package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicegw/sluice/pipeline"
)

// Observability: the gateway keeps statistics of every HTTPServer (and
// each of its routes and its top paths), every Pipeline (and each filter
// step) and every backend server of a Proxy, unless WithoutStats is given.
// The admin API shows them under /apis/v2/status/objects, MetricsHandler
// exports them to Prometheus, and the log level changes at run time
// through SetLogLevel or the admin API.

// WithoutStats turns statistics off: no recorder on the request path,
// empty status figures and an empty metrics exposition. Default: on.
func WithoutStats() Option {
	return func(s *settings) error { s.noStats = true; return nil }
}

// WithLogLevel makes lv the gateway's log level: records below it are
// dropped before they reach the logger's handler, and SetLogLevel (and the
// admin API's /apis/v2/loglevel) changes it. Give the same LevelVar to the
// handler (slog.HandlerOptions.Level) so that lowering it lets more
// through; a handler with a fixed level of its own still drops what is
// below that. Default: a LevelVar of the gateway's own, set to the lowest
// standard level the logger's handler enables.
func WithLogLevel(lv *slog.LevelVar) Option {
	return func(s *settings) error {
		if lv == nil {
			return errors.New("nil level")
		}
		s.level = lv
		return nil
	}
}

// leveled returns l filtered by lv, creating lv when nil.
func leveled(l *slog.Logger, lv *slog.LevelVar) (*slog.Logger, *slog.LevelVar) {
	if lv == nil {
		lv = new(slog.LevelVar)
		lv.Set(slog.LevelError)
		for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
			if l.Handler().Enabled(context.Background(), level) {
				lv.Set(level)
				break
			}
		}
	}
	return slog.New(&levelHandler{h: l.Handler(), lv: lv}), lv
}

// levelHandler drops the records below a LevelVar.
type levelHandler struct {
	h  slog.Handler
	lv *slog.LevelVar
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.lv.Level() && h.h.Enabled(ctx, l)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.h.Handle(ctx, r) }

func (h *levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelHandler{h: h.h.WithAttrs(attrs), lv: h.lv}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{h: h.h.WithGroup(name), lv: h.lv}
}

// LogLevel returns the gateway's log level (see WithLogLevel).
func (g *Gateway) LogLevel() slog.Level { return g.s.level.Level() }

// SetLogLevel changes the gateway's log level at once, for every object
// already built and to come.
func (g *Gateway) SetLogLevel(l slog.Level) {
	g.s.level.Set(l)
	g.s.logger.Info("log level changed", "level", l.String())
}

// maxLevelBody bounds the body of a PUT /apis/v2/loglevel.
const maxLevelBody = 4 << 10

// logLevelBody is the JSON of /apis/v2/loglevel.
type logLevelBody struct {
	Level string `json:"level" yaml:"level"`
}

func (g *Gateway) adminGetLogLevel(w http.ResponseWriter, r *http.Request) {
	writeOut(w, r, http.StatusOK, logLevelBody{Level: g.LogLevel().String()})
}

func (g *Gateway) adminPutLogLevel(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLevelBody))
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	var body logLevelBody
	if err := json.Unmarshal(b, &body); err != nil {
		writeError(w, r, http.StatusBadRequest, `the body must be JSON like {"level": "debug"}: `+err.Error())
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(body.Level)); err != nil {
		writeError(w, r, http.StatusBadRequest, "level: "+err.Error()+` (want debug, info, warn or error, optionally with +n or -n)`)
		return
	}
	g.SetLogLevel(l)
	writeOut(w, r, http.StatusOK, logLevelBody{Level: l.String()})
}

// adminObservability adds the observability endpoints to the admin API:
//
//	GET /apis/v2/metrics    Prometheus text exposition (see MetricsHandler)
//	GET /apis/v2/loglevel   {"level": "INFO"}
//	PUT /apis/v2/loglevel   {"level": "debug"} changes the log level
func (g *Gateway) adminObservability(mux *http.ServeMux) {
	p := AdminPrefix
	mux.Handle("GET "+p+"/metrics", g.MetricsHandler())
	mux.HandleFunc("GET "+p+"/loglevel", g.adminGetLogLevel)
	mux.HandleFunc("PUT "+p+"/loglevel", g.adminPutLogLevel)
}

// MetricsHandler returns the gateway's statistics in the Prometheus text
// exposition format, gathered with the Prometheus client library from the
// same recorders the status shows, at scrape time: the request path pays
// nothing more for it. Mount it anywhere; the admin API serves it at
// /apis/v2/metrics. The series (durations in seconds; code_class is 1xx to
// 5xx, or "other"):
//
//	sluice_server_requests_total{server,code_class}
//	sluice_server_request_duration_seconds{server}            histogram
//	sluice_server_in_flight_requests{server}
//	sluice_route_requests_total{server,route,backend,code_class}
//	sluice_route_request_duration_seconds{server,route,backend} histogram
//	sluice_route_in_flight_requests{server,route,backend}
//	sluice_pipeline_requests_total{pipeline,code_class}
//	sluice_pipeline_request_duration_seconds{pipeline}        histogram
//	sluice_pipeline_in_flight_requests{pipeline}
//	sluice_filter_duration_seconds{pipeline,filter,kind}      histogram
//	sluice_backend_requests_total{pipeline,filter,pool,upstream,code_class}
//	sluice_backend_request_duration_seconds{pipeline,filter,pool,upstream} histogram
//
// A backend's duration runs from sending the request to the response's
// headers. The histograms cover the objects' whole life, across reloads.
func (g *Gateway) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(g))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// metricBounds are the upper bounds of the exported latency histograms.
var metricBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

var codeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// collector turns the gateway's recorders into Prometheus metrics at each
// scrape. It describes nothing up front (an unchecked collector): the
// series come and go with the objects.
type collector struct {
	g *Gateway

	serverReqs, serverDur, serverInFlight     *prometheus.Desc
	routeReqs, routeDur, routeInFlight        *prometheus.Desc
	pipelineReqs, pipelineDur, pipelineFlight *prometheus.Desc
	filterDur                                 *prometheus.Desc
	backendReqs, backendDur                   *prometheus.Desc
}

func newCollector(g *Gateway) *collector {
	d := prometheus.NewDesc
	return &collector{
		g:              g,
		serverReqs:     d("sluice_server_requests_total", "Requests the HTTPServer answered, by status class.", []string{"server", "code_class"}, nil),
		serverDur:      d("sluice_server_request_duration_seconds", "Time the HTTPServer took to answer a request.", []string{"server"}, nil),
		serverInFlight: d("sluice_server_in_flight_requests", "Requests the HTTPServer is serving.", []string{"server"}, nil),
		routeReqs:      d("sluice_route_requests_total", "Requests answered on a route, by status class.", []string{"server", "route", "backend", "code_class"}, nil),
		routeDur:       d("sluice_route_request_duration_seconds", "Time taken to answer a request on a route.", []string{"server", "route", "backend"}, nil),
		routeInFlight:  d("sluice_route_in_flight_requests", "Requests being served on a route.", []string{"server", "route", "backend"}, nil),
		pipelineReqs:   d("sluice_pipeline_requests_total", "Requests the pipeline handled, by status class.", []string{"pipeline", "code_class"}, nil),
		pipelineDur:    d("sluice_pipeline_request_duration_seconds", "Time from a request entering the pipeline to its response written.", []string{"pipeline"}, nil),
		pipelineFlight: d("sluice_pipeline_in_flight_requests", "Requests the pipeline is serving.", []string{"pipeline"}, nil),
		filterDur:      d("sluice_filter_duration_seconds", "Time a filter step took.", []string{"pipeline", "filter", "kind"}, nil),
		backendReqs:    d("sluice_backend_requests_total", "Attempts sent to a backend server, by the status class it answered (502 or 504 when it failed).", []string{"pipeline", "filter", "pool", "upstream", "code_class"}, nil),
		backendDur:     d("sluice_backend_request_duration_seconds", "Time from sending an attempt to a backend server to its response headers.", []string{"pipeline", "filter", "pool", "upstream"}, nil),
	}
}

// Describe sends nothing: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// statsSource is a filter that keeps per-server recorders (the Proxy).
type statsSource interface {
	StatsSources(fn func(pool, server string, r *pipeline.Recorder))
}

// Collect sends the metrics of every live object.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, o := range c.g.liveObjects() {
		switch obj := o.obj.(type) {
		case *serverObject:
			obj.s.StatsSources(func(route, backend string, r *pipeline.Recorder, inFlight int64) {
				if route == "" {
					c.counts(ch, c.serverReqs, r, o.name)
					ch <- histogram(c.serverDur, r, o.name)
					ch <- prometheus.MustNewConstMetric(c.serverInFlight, prometheus.GaugeValue, float64(inFlight), o.name)
					return
				}
				c.counts(ch, c.routeReqs, r, o.name, route, backend)
				ch <- histogram(c.routeDur, r, o.name, route, backend)
				ch <- prometheus.MustNewConstMetric(c.routeInFlight, prometheus.GaugeValue, float64(inFlight), o.name, route, backend)
			})
		case *pipelineObject:
			p := obj.p
			has := false
			p.StatsSources(func(filter, kind string, r *pipeline.Recorder) {
				has = true
				if filter == "" {
					c.counts(ch, c.pipelineReqs, r, o.name)
					ch <- histogram(c.pipelineDur, r, o.name)
					return
				}
				ch <- histogram(c.filterDur, r, o.name, filter, kind)
			})
			if !has {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.pipelineFlight, prometheus.GaugeValue, float64(p.InFlight()), o.name)
			p.EachFilter(func(name, _ string, f pipeline.Filter) {
				src, ok := f.(statsSource)
				if !ok {
					return
				}
				seen := map[[2]string]bool{}
				src.StatsSources(func(pool, server string, r *pipeline.Recorder) {
					if k := [2]string{pool, server}; !seen[k] { // a URL listed twice is one series
						seen[k] = true
						c.counts(ch, c.backendReqs, r, o.name, name, pool, server)
						ch <- histogram(c.backendDur, r, o.name, name, pool, server)
					}
				})
			})
		}
	}
}

// counts sends r's request counts by status class, for the classes seen.
func (c *collector) counts(ch chan<- prometheus.Metric, d *prometheus.Desc, r *pipeline.Recorder, labels ...string) {
	for i, n := range r.Classes() {
		if n > 0 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), slices.Concat(labels, []string{codeClasses[i]})...)
		}
	}
}

func histogram(d *prometheus.Desc, r *pipeline.Recorder, labels ...string) prometheus.Metric {
	h := r.Cumulative(metricBounds)
	buckets := make(map[float64]uint64, len(metricBounds))
	for i, b := range metricBounds {
		buckets[b.Seconds()] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

// liveObject is a live object with its name.
type liveObject struct {
	name string
	obj  Object
}

// liveObjects returns the live objects, sorted by name.
func (g *Gateway) liveObjects() []liveObject {
	g.mu.Lock()
	out := make([]liveObject, 0, len(g.objects))
	for name, e := range g.objects {
		if e.obj != nil {
			out = append(out, liveObject{name: name, obj: e.obj})
		}
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
