package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

func (c *cli) topCommand() *command {
	return &command{
		name:  "top",
		args:  "[flags]",
		short: "Show TPS, error % and latency per route and per backend, refreshed.",
		long: `Every -i it reads the status of every object and redraws the screen
(ANSI clear) with one row per route of every HTTPServer and one per backend
server of every Proxy: requests per second and error % since the previous
frame (the first frame shows the one-minute averages), requests in flight,
and the 50th and 99th percentile latencies of the last 30 to 60 seconds.
-n stops after that many frames; 0 runs until interrupted.`,
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "ignored: top always draws a table")
			interval := fs.Duration("i", 2*time.Second, "refresh `interval`")
			frames := fs.Int("n", 0, "stop after `N` frames; 0 runs until interrupted")
			plain := fs.Bool("plain", false, "do not clear the screen between frames")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("top takes no arguments")
				}
				if *interval <= 0 {
					return usagef("-i must be positive")
				}
				if *frames < 0 {
					return usagef("-n must not be negative")
				}
				api, err := cf.client(c, fs)
				if err != nil {
					return err
				}
				defer api.close()
				t := &top{prev: map[string]sample{}}
				for n := 1; ; n++ {
					var st struct {
						Objects []objectStats `json:"objects"`
					}
					if err := api.getJSON("/status/objects", nil, &st); err != nil {
						return err
					}
					if !*plain {
						io.WriteString(c.stdout, clearScreen)
					}
					if err := t.frame(c, st.Objects); err != nil {
						return err
					}
					if *frames > 0 && n >= *frames {
						return nil
					}
					select {
					case <-c.ctx.Done():
						return nil
					case <-time.After(*interval):
					}
				}
			}
		},
	}
}

// top keeps the previous frame's counts to show rates between frames.
type top struct {
	prev map[string]sample
}

// sample is a row's counts at one moment.
type sample struct {
	at            time.Time
	total, errors uint64
}

// rates returns the requests per second and the error % of the row key
// since the previous frame, or the snapshot's one-minute average and
// lifetime error % on the first.
func (t *top) rates(key string, s pipeline.StatsSnapshot) (tps, errPct float64) {
	tps, errPct = s.Rate.M1, s.ErrorPercent
	if p, ok := t.prev[key]; ok && s.Time.After(p.at) && s.Total >= p.total {
		n := s.Total - p.total
		tps = float64(n) / s.Time.Sub(p.at).Seconds()
		errPct = 0
		if n > 0 {
			errPct = 100 * float64(s.Errors-p.errors) / float64(n)
		}
	}
	t.prev[key] = sample{at: s.Time, total: s.Total, errors: s.Errors}
	return tps, errPct
}

func (t *top) row(key, kind, name string, inFlight string, s pipeline.StatsSnapshot) []string {
	tps, errPct := t.rates(key, s)
	l := s.Recent
	if l.Count == 0 {
		l = s.Latency
	}
	return []string{kind, name, fmt.Sprintf("%.1f", tps), fmt.Sprintf("%.2f", errPct), inFlight,
		fmtDuration(l.P50), fmtDuration(l.P99), fmt.Sprint(s.Total)}
}

// frame prints one screen.
func (t *top) frame(c *cli, objects []objectStats) error {
	fmt.Fprintf(c.stdout, "sluice top  %s\n\n", time.Now().Format(time.TimeOnly))
	var rows [][]string
	for i := range objects {
		o := &objects[i]
		st := o.Status.Stats
		if st == nil {
			continue
		}
		switch o.Kind {
		case sluice.KindHTTPServer:
			for _, r := range st.Routes {
				rows = append(rows, t.row("route/"+o.Name+"/"+r.Name, "route", o.Name+" "+r.Name+" → "+r.Backend, fmt.Sprint(r.InFlight), r.Stats))
			}
		case sluice.KindPipeline:
			for _, b := range o.backends() {
				rows = append(rows, t.row("backend/"+o.Name+"/"+b.filter+"/"+b.pool+"/"+b.url, "backend", o.Name+"/"+b.filter+" "+b.url, "", b.stats))
			}
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(c.stdout, "no statistics yet: no HTTPServer or Proxy, or the gateway runs without stats")
		return nil
	}
	return c.table([]string{"", "NAME", "TPS", "ERR%", "IN-FLIGHT", "P50", "P99", "TOTAL"}, rows)
}
