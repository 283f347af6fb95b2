package sluice_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.evs = append(l.evs, s)
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.evs, " ")
}

type tickerSpec struct {
	Label string `yaml:"label"`
	Fail  bool   `yaml:"fail"`
}

type ticker struct {
	log   *eventLog
	label string
	fail  bool
}

func (c *ticker) Run(ctx context.Context) error {
	c.log.add("run:" + c.label)
	if c.fail {
		return errors.New("cannot tick")
	}
	<-ctx.Done()
	c.log.add("stop:" + c.label)
	return nil
}

func (c *ticker) Close() error { c.log.add("close:" + c.label); return nil }
func (c *ticker) Status() any  { return map[string]string{"label": c.label} }

// closeLogger is a filter that logs when its pipeline closes it.
type closeLogger struct{ log *eventLog }

func (f closeLogger) Handle(*pipeline.Context) pipeline.Result { return pipeline.Continue }
func (f closeLogger) Close() error                             { f.log.add("close:pipeline"); return nil }

func TestControllerLifecycle(t *testing.T) {
	log := &eventLog{}
	kind := sluice.DefineObject("Ticker", sluice.CategoryBusiness, func(env sluice.Env, s *tickerSpec) (sluice.Object, error) {
		return &ticker{log: log, label: s.Label, fail: s.Fail}, nil
	})
	filter := pipeline.Define("CloseLogger", nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return closeLogger{log}, nil
	})
	g, err := sluice.New(sluice.WithObjectKinds(kind), sluice.WithFilterKinds(filter))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, g, "kind: Ticker\nname: t\nlabel: one\n---\nkind: Pipeline\nname: p\nfilters: [{name: c, kind: CloseLogger}]\n")
	if log.String() != "" {
		t.Fatalf("a controller ran before Start: %s", log)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return log.String() == "run:one" })

	// An update stops the old Run before the new one starts.
	apply(t, g, "kind: Ticker\nname: t\nlabel: two\n")
	waitFor(t, func() bool {
		return strings.Contains(log.String(), "run:two") && strings.Contains(log.String(), "close:one")
	})
	if got := log.String(); strings.Index(got, "stop:one") > strings.Index(got, "run:two") {
		t.Errorf("the new controller ran before the old one stopped: %s", got)
	}

	// A Run that fails shows in the status.
	apply(t, g, "kind: Ticker\nname: bad\nfail: true\n")
	waitFor(t, func() bool {
		for _, o := range g.Status().Objects {
			if o.Name == "bad" && o.Error == "cannot tick" {
				return true
			}
		}
		return false
	})

	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Controllers stop before the pipelines they use are closed.
	got := log.String()
	if i, j := strings.Index(got, "stop:two"), strings.Index(got, "close:pipeline"); i < 0 || j < 0 || i > j {
		t.Errorf("shutdown order: %s", got)
	}
}

func TestDuplicateObjectKind(t *testing.T) {
	k := sluice.DefineObject("HTTPServer", sluice.CategorySystem, func(sluice.Env, *struct{}) (sluice.Object, error) { return nil, nil })
	if _, err := sluice.New(sluice.WithObjectKinds(k)); !errors.Is(err, sluice.ErrDuplicateKind) {
		t.Errorf("registering HTTPServer again: %v", err)
	}
}

// statusPoller calls back into its gateway from Run, as a status reporter
// does; updates, deletes and Shutdown must not deadlock on it.
type statusPoller struct{ g *sluice.Gateway }

func (c *statusPoller) Run(ctx context.Context) error {
	for {
		c.g.Status()
		c.g.List("")
		select {
		case <-ctx.Done():
			c.g.Status() // once more while being stopped
			return nil
		default:
		}
	}
}

func (c *statusPoller) Close() error { return nil }

func TestControllerMayCallTheGateway(t *testing.T) {
	kind := sluice.DefineObject("Poller", sluice.CategoryBusiness, func(env sluice.Env, s *tickerSpec) (sluice.Object, error) {
		return &statusPoller{g: env.Gateway}, nil
	})
	for i := 0; i < 20; i++ {
		g, err := sluice.New(sluice.WithObjectKinds(kind))
		if err != nil {
			t.Fatal(err)
		}
		apply(t, g, "kind: Poller\nname: p\nlabel: a\n")
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		apply(t, g, "kind: Poller\nname: p\nlabel: b\n")
		if err := g.Delete(context.Background(), "Poller", "p"); err != nil {
			t.Fatal(err)
		}
		apply(t, g, "kind: Poller\nname: p\nlabel: c\n")
		if err := g.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
