package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicegw/sluice"
)

// gateway runs "sluice mirror" and an empty "sluice server" and returns
// the admin API's URL and the mirror's address.
func gateway(t *testing.T, extra ...string) (server, mirror string) {
	t.Helper()
	mirror = freeAddr(t)
	start(t, "", "mirror", "-addr", mirror)
	admin := freeAddr(t)
	server = "http://" + admin
	p := start(t, "", append([]string{"server", "-admin", admin}, extra...)...)
	waitHealthy(t, p, server, extra...)
	return server, mirror
}

// webYAML is an HTTPServer "web" on addr routing /pipeline to pipeline-a,
// which proxies to the mirror, plus pipeline-a itself; with mock set it
// also routes /mock to pipeline-b, a Mock answering body.
func webYAML(addr, mirror, mock string) string {
	host, port, _ := strings.Cut(addr, ":")
	y := fmt.Sprintf(`kind: HTTPServer
name: web
address: %s
port: %s
rules:
  - paths:
      - pathPrefix: /pipeline
        backend: pipeline-a
`, host, port)
	if mock != "" {
		y += `      - pathPrefix: /mock
        backend: pipeline-b
`
	}
	y += fmt.Sprintf(`---
kind: Pipeline
name: pipeline-a
filters:
  - name: proxy
    kind: Proxy
    pools:
      - servers:
          - url: http://%s
`, mirror)
	if mock != "" {
		y += mockYAML(mock)
	}
	return y
}

func mockYAML(body string) string {
	return fmt.Sprintf(`---
kind: Pipeline
name: pipeline-b
filters:
  - name: mock
    kind: Mock
    rules:
      - code: 200
        body: %q
`, body)
}

func TestObjectCommands(t *testing.T) {
	server, mirror := gateway(t)
	srv := []string{"-server", server}
	web := freeAddr(t)
	hc := httpClient(t)

	t.Run("empty", func(t *testing.T) {
		if out := mustCtl(t, append([]string{"object", "get"}, srv...)...); strings.TrimSpace(out) != "NAME  KIND" {
			t.Errorf("object get on an empty gateway:\n%s", out)
		}
	})

	t.Run("create takes effect without restart", func(t *testing.T) {
		file := writeFile(t, "v1.yaml", webYAML(web, mirror, ""))
		out := mustCtl(t, append([]string{"object", "create", "-f", file}, srv...)...)
		mustContain(t, "object create", out, "HTTPServer web created", "Pipeline pipeline-a created")
		code, body := do(t, hc, http.MethodPost, "http://"+web+"/pipeline", "hello")
		if code != http.StatusOK {
			t.Fatalf("POST /pipeline: %d %s", code, body)
		}
		mustContain(t, "the mirrored request", body, "Method: POST", "Body  : hello")

		// A second create of the same objects is refused.
		code, _, errs := ctl(t, "", append([]string{"object", "create", "-f", file}, srv...)...)
		if code != exitFail {
			t.Fatalf("second create: exit %d, want %d", code, exitFail)
		}
		mustContain(t, "stderr", errs, "already exists")
	})

	t.Run("create from stdin", func(t *testing.T) {
		code, out, errs := ctl(t, mockYAML("from stdin"), append([]string{"object", "create", "-f", "-"}, srv...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		mustContain(t, "stdout", out, "Pipeline pipeline-b created")
		out = mustCtl(t, append([]string{"object", "apply", "-f", writeFile(t, "b.yaml", mockYAML("again")), "-o", "yaml"}, srv...)...)
		if out != "objects:\n  - kind: Pipeline\n    name: pipeline-b\n" {
			t.Errorf("apply -o yaml:\n%s", out)
		}
		out = mustCtl(t, append([]string{"object", "apply", "-f", writeFile(t, "b.yaml", mockYAML("again")), "-o", "json"}, srv...)...)
		var res writeResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Objects) != 1 || res.Objects[0].Name != "pipeline-b" {
			t.Errorf("apply -o json: %v\n%s", err, out)
		}
		mustCtl(t, append([]string{"object", "delete", "pipeline-b"}, srv...)...)
	})

	t.Run("apply twice", func(t *testing.T) {
		file := writeFile(t, "v2.yaml", webYAML(web, mirror, "mocked"))
		for i := range 2 {
			out := mustCtl(t, append([]string{"object", "apply", "-f", file}, srv...)...)
			mustContain(t, fmt.Sprintf("apply #%d", i+1), out, "HTTPServer web applied", "Pipeline pipeline-b applied")
			if code, body := do(t, hc, http.MethodGet, "http://"+web+"/mock", ""); code != http.StatusOK || body != "mocked" {
				t.Fatalf("apply #%d: GET /mock: %d %q", i+1, code, body)
			}
			if code, body := do(t, hc, http.MethodPost, "http://"+web+"/pipeline", "again"); code != http.StatusOK || !strings.Contains(body, "Body  : again") {
				t.Fatalf("apply #%d: POST /pipeline: %d %q", i+1, code, body)
			}
		}
	})

	t.Run("update", func(t *testing.T) {
		file := writeFile(t, "b.yaml", mockYAML("updated"))
		out := mustCtl(t, append([]string{"object", "update", "-f", file}, srv...)...)
		mustContain(t, "object update", out, "Pipeline pipeline-b updated")
		if code, body := do(t, hc, http.MethodGet, "http://"+web+"/mock", ""); body != "updated" {
			t.Fatalf("GET /mock after update: %d %q", code, body)
		}

		// Update refuses a new object and a file of several.
		code, _, errs := ctl(t, strings.ReplaceAll(mockYAML("x"), "pipeline-b", "pipeline-new"), append([]string{"object", "update", "-f", "-"}, srv...)...)
		if code != exitFail || !strings.Contains(errs, "not found") {
			t.Errorf("update of a new object: exit %d, stderr %q", code, errs)
		}
		code, _, errs = ctl(t, webYAML(web, mirror, "x"), append([]string{"object", "update", "-f", "-"}, srv...)...)
		if code != exitFail || !strings.Contains(errs, "exactly one object") {
			t.Errorf("update of three objects: exit %d, stderr %q", code, errs)
		}
	})

	t.Run("get", func(t *testing.T) {
		out := mustCtl(t, append([]string{"object", "get"}, srv...)...)
		want := "NAME        KIND\npipeline-a  Pipeline\npipeline-b  Pipeline\nweb         HTTPServer\n"
		if out != want {
			t.Errorf("object get:\n%s\nwant:\n%s", out, want)
		}
		out = mustCtl(t, append([]string{"object", "get", "-kind", "HTTPServer"}, srv...)...)
		if out != "NAME  KIND\nweb   HTTPServer\n" {
			t.Errorf("object get -kind HTTPServer:\n%s", out)
		}
		// An alias of the kind works too.
		out = mustCtl(t, append([]string{"object", "get", "-kind", "HTTPPipeline", "pipeline-a"}, srv...)...)
		mustContain(t, "get -kind HTTPPipeline pipeline-a", out, "kind: Pipeline\nname: pipeline-a\n")

		out = mustCtl(t, append([]string{"object", "get", "web"}, srv...)...)
		if !strings.HasPrefix(out, "kind: HTTPServer\nname: web\n") || !strings.Contains(out, "backend: pipeline-b") {
			t.Errorf("object get web (yaml):\n%s", out)
		}
		// Flags after the name.
		out = mustCtl(t, append([]string{"object", "get", "web", "-o", "json"}, srv...)...)
		var spec map[string]any
		if err := json.Unmarshal([]byte(out), &spec); err != nil || spec["kind"] != "HTTPServer" || spec["name"] != "web" {
			t.Errorf("object get web -o json: %v\n%s", err, out)
		}
		out = mustCtl(t, append([]string{"object", "get", "-o", "json"}, srv...)...)
		var specs []map[string]any
		if err := json.Unmarshal([]byte(out), &specs); err != nil || len(specs) != 3 {
			t.Errorf("object get -o json: %v\n%s", err, out)
		}
		out = mustCtl(t, append([]string{"object", "get", "-o", "yaml"}, srv...)...)
		if strings.Count(out, "\n---\n") != 2 || !strings.Contains(out, "name: pipeline-b") {
			t.Errorf("object get -o yaml:\n%s", out)
		}
		out = mustCtl(t, append([]string{"object", "get", "pipeline-a", "-o", "table"}, srv...)...)
		if out != "NAME        KIND\npipeline-a  Pipeline\n" {
			t.Errorf("object get pipeline-a -o table:\n%s", out)
		}

		for _, args := range [][]string{
			{"object", "get", "nope"},
			{"object", "get", "nope", "-o", "json"},
			{"object", "get", "web", "-kind", "Pipeline"},
		} {
			code, out, errs := ctl(t, "", append(args, srv...)...)
			if code != exitFail || out != "" || !strings.Contains(errs, "not found") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
			}
		}
		code, _, errs := ctl(t, "", append([]string{"object", "get", "-kind", "Nope"}, srv...)...)
		if code != exitFail || !strings.Contains(errs, `unknown object kind "Nope"`) {
			t.Errorf("get -kind Nope: exit %d, stderr %q", code, errs)
		}
	})

	t.Run("describe and status", func(t *testing.T) {
		out := mustCtl(t, append([]string{"object", "describe", "pipeline-a"}, srv...)...)
		mustContain(t, "describe", out, "# spec\nkind: Pipeline\nname: pipeline-a\n", "---\n# status\n", "requests:")
		out = mustCtl(t, append([]string{"object", "describe", "pipeline-a", "-o", "json"}, srv...)...)
		var d struct {
			Spec   map[string]any      `json:"spec"`
			Status sluice.ObjectStatus `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.Spec["name"] != "pipeline-a" || d.Status.Kind != "Pipeline" {
			t.Errorf("describe -o json: %v\n%s", err, out)
		}

		out = mustCtl(t, append([]string{"object", "status", "-o", "json"}, srv...)...)
		var st sluice.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Objects) != 3 || st.Revision == 0 {
			t.Errorf("status -o json: %v\n%s", err, out)
		}
		out = mustCtl(t, append([]string{"object", "status"}, srv...)...)
		mustContain(t, "status", out, "revision:", "name: web", "kind: HTTPServer")
		out = mustCtl(t, append([]string{"object", "status", "-o", "table"}, srv...)...)
		mustContain(t, "status -o table", out, "NAME", "REVISION", "pipeline-a", "web")
		out = mustCtl(t, append([]string{"object", "status", "web", "-o", "yaml"}, srv...)...)
		mustContain(t, "status web", out, "name: web", "address: "+web)

		code, _, errs := ctl(t, "", append([]string{"object", "describe", "nope"}, srv...)...)
		if code != exitFail || !strings.Contains(errs, `object "nope" not found`) {
			t.Errorf("describe nope: exit %d, stderr %q", code, errs)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		bad := `kind: Pipeline
name: pipeline-bad
filters:
  - name: proxy
    kind: Proxy
    bogusField: 1
    pools:
      - servers:
          - url: http://` + mirror + "\n"
		for _, cmd := range []string{"create", "apply"} {
			code, out, errs := ctl(t, bad, append([]string{"object", cmd, "-f", "-"}, srv...)...)
			if code != exitFail || out != "" {
				t.Fatalf("%s: exit %d, stdout %q", cmd, code, out)
			}
			mustContain(t, cmd+" stderr", errs, `Pipeline "pipeline-bad"`, "line 6", "bogusField")
		}
		// Nothing was created.
		if code, _, _ := ctl(t, "", append([]string{"object", "get", "pipeline-bad"}, srv...)...); code != exitFail {
			t.Errorf("pipeline-bad exists after a failed create")
		}
	})

	t.Run("kinds", func(t *testing.T) {
		out := mustCtl(t, append([]string{"object", "kinds"}, srv...)...)
		mustContain(t, "kinds", out, "OBJECT KIND", "HTTPServer", "Pipeline", "FILTER KIND", "Proxy", "Mock", "Validator", "invalid")
		out = mustCtl(t, append([]string{"object", "kinds", "-o", "json"}, srv...)...)
		var k struct {
			ObjectKinds []kindInfo `json:"objectKinds"`
			FilterKinds []kindInfo `json:"filterKinds"`
		}
		if err := json.Unmarshal([]byte(out), &k); err != nil || len(k.ObjectKinds) < 2 || len(k.FilterKinds) < 5 {
			t.Errorf("kinds -o json: %v\n%s", err, out)
		}
		out = mustCtl(t, append([]string{"object", "kinds", "-o", "yaml"}, srv...)...)
		mustContain(t, "kinds -o yaml", out, "objectKinds:\n  - kind: ", "filterKinds:\n  - kind: ")
	})

	t.Run("health", func(t *testing.T) {
		if out := mustCtl(t, append([]string{"health"}, srv...)...); out != "ok\n" {
			t.Errorf("health: %q", out)
		}
		code, _, errs := ctl(t, "", "health", "-server", "http://"+freeAddr(t))
		if code != exitFail || !strings.Contains(errs, "cannot reach the admin API") {
			t.Errorf("health of nothing: exit %d, stderr %q", code, errs)
		}
	})

	t.Run("delete", func(t *testing.T) {
		out := mustCtl(t, append([]string{"object", "delete", "pipeline-b"}, srv...)...)
		mustContain(t, "delete", out, "pipeline-b deleted")
		if code, _ := do(t, hc, http.MethodGet, "http://"+web+"/mock", ""); code != http.StatusServiceUnavailable {
			t.Errorf("GET /mock after deleting its pipeline: %d, want 503", code)
		}
		code, _, errs := ctl(t, "", append([]string{"object", "delete", "pipeline-b"}, srv...)...)
		if code != exitFail || !strings.Contains(errs, "not found") {
			t.Errorf("second delete: exit %d, stderr %q", code, errs)
		}

		file := writeFile(t, "v1.yaml", webYAML(web, mirror, ""))
		out = mustCtl(t, append([]string{"object", "delete", "-f", file}, srv...)...)
		mustContain(t, "delete -f", out, "HTTPServer web deleted", "Pipeline pipeline-a deleted")
		if out := mustCtl(t, append([]string{"object", "get"}, srv...)...); strings.TrimSpace(out) != "NAME  KIND" {
			t.Errorf("objects left after delete -f:\n%s", out)
		}
	})
}

func TestAdminToken(t *testing.T) {
	const token = "s3cret-t0ken"
	admin := freeAddr(t)
	server := "http://" + admin
	p := start(t, "", "server", "-admin", admin, "-admin-token", token)
	waitHealthy(t, p, server, "-token", token)

	code, out, errs := ctl(t, "", "health", "-server", server)
	if code != exitFail || !strings.Contains(errs, "bearer token") {
		t.Errorf("health without a token: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = ctl(t, "", "object", "get", "x", "-server", server, "-token", "wrong")
	if code != exitFail || !strings.Contains(errs, "bearer token") || strings.Contains(errs, "wrong") {
		t.Errorf("get with a wrong token: exit %d, stderr %q", code, errs)
	}

	t.Setenv("SLUICE_SERVER", server)
	t.Setenv("SLUICE_TOKEN", token)
	if out := mustCtl(t, "health"); out != "ok\n" {
		t.Errorf("health with the token from the environment: %q", out)
	}
	mustCtl(t, "object", "get")

	// The help texts do not show the token from the environment either.
	_, help, _ := ctl(t, "", "help", "object", "get")

	if p.stop(t) != 0 {
		t.Errorf("server exit %d", p.code)
	}
	for what, s := range map[string]string{"server stdout": p.stdout.String(), "server stderr": p.stderr.String(), "help": help} {
		if strings.Contains(s, token) {
			t.Errorf("%s shows the token:\n%s", what, s)
		}
	}
}

func TestAdminRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:2381", "example.com:2381"} {
		for _, cmd := range []string{"server", "demo"} {
			t.Run(cmd+" "+addr, func(t *testing.T) {
				t.Setenv("SLUICE_ADMIN_TOKEN", "")
				code, out, errs := ctl(t, "", cmd, "-admin", addr)
				if code != exitUsage {
					t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, exitUsage, out, errs)
				}
				mustContain(t, "stderr", errs, "refusing to serve the admin API", "-admin-token")
			})
		}
	}
}

func TestYAMLString(t *testing.T) {
	for in, want := range map[string]string{
		"pipeline-a": "pipeline-a",
		"Pipeline":   "Pipeline",
		"a.b_c-1":    "a.b_c-1",
		"1abc":       `"1abc"`,
		"123":        `"123"`,
		"true":       `"true"`,
		"No":         `"No"`,
		"":           `""`,
		"a: b":       `"a: b"`,
		"-x":         `"-x"`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
	}
}
