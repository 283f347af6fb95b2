package sluice_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRootImportsNoClusterOrMesh keeps embedding cheap: the root package
// must not pull in the cluster or mesh packages, nor their heavy
// dependencies.
func TestRootImportsNoClusterOrMesh(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/sluicegw/sluice/cluster",
		"github.com/sluicegw/sluice/mesh",
		"github.com/hashicorp/raft",
		"go.etcd.io/",
		"github.com/go-zookeeper/",
		"github.com/hashicorp/consul",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("the root package depends on %s", dep)
			}
		}
	}
}
