package proxy

import (
	"strconv"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// observe records an attempt on s that began at start and ended with
// status code (the server's, or the pool's own 502, 504 or 400 when the
// server gave none): in s's recorder, when the pipeline keeps stats, and
// in the request's Explain, when its gate explains it.
func (x *exchange) observe(s *Server, start time.Time, code int) {
	rec, e := s.stats.rec, x.c.Explain()
	if rec == nil && e == nil {
		return
	}
	now := x.p.now()
	took := now.Sub(start)
	if rec != nil {
		var size int64
		if x.in.ContentLength > 0 {
			size = x.in.ContentLength
		}
		var respSize int64
		if x.resp != nil && x.resp.ContentLength > 0 {
			respSize = x.resp.ContentLength
		}
		rec.RecordAt(now, code, took, size, respSize)
	}
	if e != nil {
		e.AddUpstream("pool=" + x.p.field + " server=" + strconv.Quote(s.url) +
			" status=" + strconv.Itoa(code) + " took=" + took.String())
	}
}

// StatsSources hands the recorder of each server of each pool to fn, for
// metrics exporters: pool is the pool's field ("mainPool", "pools[1]"),
// server its URL. It does nothing when the pipeline keeps no stats
// (pipeline.Env.Stats).
func (p *Proxy) StatsSources(fn func(pool, server string, r *pipeline.Recorder)) {
	for _, pl := range p.pools {
		for _, s := range pl.Servers() { // a registry-fed pool: its current generation
			if rec := s.stats.rec; rec != nil {
				fn(pl.field, s.url, rec)
			}
		}
	}
}
