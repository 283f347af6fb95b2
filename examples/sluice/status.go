package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/sluicegw/sluice/gate"
	"github.com/sluicegw/sluice/pipeline"
)

// objectStats is the part of an object's status (GET
// /apis/v2/status/objects[/NAME]) that the stats views read: an
// HTTPServer's or a Pipeline's, whichever the object is.
type objectStats struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Status struct {
		Address string `json:"address"`
		Stats   *struct {
			// An HTTPServer's.
			Server   *pipeline.StatsSnapshot `json:"server"`
			InFlight int64                   `json:"inFlight"`
			TopPaths []pipeline.TopItem      `json:"topPaths"`
			Routes   []gate.RouteStats       `json:"routes"`
			// A Pipeline's.
			Pipeline *pipeline.StatsSnapshot `json:"pipeline"`
			Filters  []pipeline.FilterStats  `json:"filters"`
		} `json:"stats"`
		InFlight int64                      `json:"inFlight"`
		Filters  map[string]json.RawMessage `json:"filters"`
	} `json:"status"`
}

// backendStats is one upstream server of a Proxy filter.
type backendStats struct {
	filter, pool, url string
	stats             pipeline.StatsSnapshot
}

// backends returns the upstream servers of the Proxy filters of a
// pipeline's status, sorted by filter, pool and URL.
func (o *objectStats) backends() []backendStats {
	var out []backendStats
	for name, raw := range o.Status.Filters {
		var px struct {
			Pools []struct {
				Field   string `json:"field"`
				Servers []struct {
					URL   string                  `json:"url"`
					Stats *pipeline.StatsSnapshot `json:"stats"`
				} `json:"servers"`
			} `json:"pools"`
		}
		if json.Unmarshal(raw, &px) != nil {
			continue // not a Proxy
		}
		for _, p := range px.Pools {
			for _, s := range p.Servers {
				if s.Stats != nil {
					out = append(out, backendStats{filter: name, pool: p.Field, url: s.URL, stats: *s.Stats})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.filter != b.filter {
			return a.filter < b.filter
		}
		if a.pool != b.pool {
			return a.pool < b.pool
		}
		return a.url < b.url
	})
	return out
}

// statsHeader are the columns of statsRow.
var statsHeader = []string{"REQUESTS", "TPS(1m)", "ERRORS", "ERR%", "P50", "P99", "MAX", "REQ-SIZE", "RESP-SIZE"}

// statsRow renders a snapshot: counts, the one-minute rate, errors,
// lifetime percentiles and maximum, and mean body sizes.
func statsRow(s pipeline.StatsSnapshot) []string {
	return []string{
		strconv.FormatUint(s.Total, 10),
		fmt.Sprintf("%.2f", s.Rate.M1),
		strconv.FormatUint(s.Errors, 10),
		fmt.Sprintf("%.2f", s.ErrorPercent),
		fmtDuration(s.Latency.P50),
		fmtDuration(s.Latency.P99),
		fmtDuration(s.Latency.Max),
		fmt.Sprintf("%.0f", s.RequestSize.Mean),
		fmt.Sprintf("%.0f", s.ResponseSize.Mean),
	}
}

// fmtDuration rounds d for a table: to the microsecond below a
// millisecond, to 10µs above.
func fmtDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

// statsTable prints one object's statistics as tables.
func (c *cli) statsTable(o *objectStats) error {
	title := fmt.Sprintf("%s (%s)", o.Name, o.Kind)
	if o.Status.Address != "" {
		title += "  address " + o.Status.Address
	}
	fmt.Fprintln(c.stdout, title)
	st := o.Status.Stats
	if st == nil {
		fmt.Fprintln(c.stdout, "no statistics (the gateway runs without them, or the object keeps none)")
		return nil
	}
	header := append([]string{"SCOPE", "NAME", "IN-FLIGHT"}, statsHeader...)
	var rows [][]string
	if st.Server != nil {
		rows = append(rows, append([]string{"server", o.Name, strconv.FormatInt(st.InFlight, 10)}, statsRow(*st.Server)...))
		for _, r := range st.Routes {
			rows = append(rows, append([]string{"route", r.Name + " → " + r.Backend, strconv.FormatInt(r.InFlight, 10)}, statsRow(r.Stats)...))
		}
	}
	if st.Pipeline != nil {
		rows = append(rows, append([]string{"pipeline", o.Name, strconv.FormatInt(o.Status.InFlight, 10)}, statsRow(*st.Pipeline)...))
		for _, f := range st.Filters {
			rows = append(rows, append([]string{"filter", f.Name + " (" + f.Kind + ")", ""}, statsRow(f.Stats)...))
		}
		for _, b := range o.backends() {
			rows = append(rows, append([]string{"backend", b.filter + " " + b.pool + " " + b.url, ""}, statsRow(b.stats)...))
		}
	}
	if err := c.table(header, rows); err != nil {
		return err
	}
	if len(st.TopPaths) > 0 {
		fmt.Fprintln(c.stdout)
		rows = rows[:0]
		for _, p := range st.TopPaths {
			rows = append(rows, []string{strconv.FormatUint(p.Count, 10), strconv.Quote(p.Key)})
		}
		if err := c.table([]string{"COUNT", "TOP PATH"}, rows); err != nil {
			return err
		}
	}
	if st.Server == nil && st.Pipeline != nil {
		fmt.Fprintln(c.stdout)
		rows = rows[:0]
		for _, f := range st.Filters {
			keys := make([]string, 0, len(f.Results))
			for k := range f.Results {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				rows = append(rows, []string{f.Name, k, strconv.FormatUint(f.Results[k], 10)})
			}
		}
		if len(rows) > 0 {
			return c.table([]string{"FILTER", "RESULT", "COUNT"}, rows)
		}
	}
	return nil
}
