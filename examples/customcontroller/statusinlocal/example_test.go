package statusinlocal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customcontroller/statusinlocal"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// A gateway with the controller kind registered, on a fake clock. Start
// runs the controller, which writes its first report at once.
func Example() {
	dir, err := os.MkdirTemp("", "statusinlocal")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "running_status.yaml")

	clk := filtertest.NewFakeClock(time.Unix(1_700_000_000, 0))
	g, err := sluice.New(sluice.WithObjectKinds(statusinlocal.Kind), sluice.WithClock(clk))
	if err != nil {
		panic(err)
	}
	defer g.Shutdown(context.Background())
	config := `
kind: Pipeline
name: pipeline
filters: []
---
kind: StatusInLocalController
name: status
path: ` + path + `
interval: 10s
`
	if err := g.ApplyYAML(context.Background(), strings.NewReader(config)); err != nil {
		panic(err)
	}
	if err := g.Start(context.Background()); err != nil {
		panic(err)
	}
	for clk.Waiters() == 0 { // the first report is written; Run waits for the next
		time.Sleep(time.Millisecond)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var r statusinlocal.Report
	if err := yaml.Unmarshal(b, &r); err != nil {
		panic(err)
	}
	fmt.Println("timestamp:", r.Timestamp)
	for _, o := range r.Objects {
		fmt.Println(o.Kind, o.Name)
	}
	// Output:
	// timestamp: 1700000000
	// Pipeline pipeline
	// StatusInLocalController status
}
