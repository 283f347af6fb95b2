package main

import (
	"net/http"
	"strings"
	"testing"
)

func TestObjectStatusTableAndTop(t *testing.T) {
	server, mirror := gateway(t)
	srv := []string{"-server", server}
	web := freeAddr(t)
	hc := httpClient(t)
	mustCtl(t, append([]string{"object", "create", "-f", writeFile(t, "web.yaml", webYAML(web, mirror, ""))}, srv...)...)
	for range 5 {
		if code, body := do(t, hc, http.MethodGet, "http://"+web+"/pipeline/x", ""); code != http.StatusOK {
			t.Fatalf("GET: %d %s", code, body)
		}
	}

	out := mustCtl(t, append([]string{"object", "status", "web"}, srv...)...)
	mustContain(t, "status web", out, "web (HTTPServer)", "SCOPE", "P99", "server", "rules[0].paths[0] → pipeline-a", "TOP PATH", `"/pipeline/x"`)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "route ") && !strings.Contains(line, " 5 ") {
			t.Errorf("route row without its 5 requests: %q", line)
		}
	}
	out = mustCtl(t, append([]string{"object", "status", "pipeline-a"}, srv...)...)
	mustContain(t, "status pipeline-a", out, "pipeline-a (Pipeline)", "filter", "proxy (Proxy)", "backend", "http://"+mirror, "RESULT", "continue")

	out = mustCtl(t, append([]string{"top", "-n", "2", "-i", "10ms"}, srv...)...)
	if n := strings.Count(out, clearScreen); n != 2 {
		t.Errorf("%d screens, want 2:\n%s", n, out)
	}
	mustContain(t, "top", out, "TPS", "ERR%", "P50", "P99", "route", "web rules[0].paths[0] → pipeline-a", "backend", "pipeline-a/proxy http://"+mirror)
	out = mustCtl(t, append([]string{"top", "-n", "1", "-plain"}, srv...)...)
	if strings.Contains(out, clearScreen) {
		t.Error("-plain cleared the screen")
	}
	for _, bad := range [][]string{{"top", "-n", "-1"}, {"top", "-i", "0s"}, {"top", "extra"}} {
		if code, _, _ := ctl(t, "", append(bad, srv...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
