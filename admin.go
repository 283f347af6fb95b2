package sluice

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"
)

// AdminPrefix is the path prefix of the admin REST API.
const AdminPrefix = "/apis/v2"

// maxAdminBody bounds a spec posted to the admin API.
const maxAdminBody = 8 << 20

// AdminHandler returns the admin REST API:
//
//	GET    /apis/v2/healthz                 liveness
//	GET    /apis/v2/object-kinds            object kinds
//	GET    /apis/v2/filter-kinds            filter kinds and their results
//	GET    /apis/v2/objects[?kind=K]        every object's spec
//	POST   /apis/v2/objects                 create (YAML or JSON, one or more documents; all or nothing)
//	PUT    /apis/v2/objects                 create or update (all or nothing)
//	GET    /apis/v2/objects/{name}          one object's spec
//	PUT    /apis/v2/objects/{name}          update an existing object
//	DELETE /apis/v2/objects/{name}          delete
//	GET    /apis/v2/status/objects[/{name}] runtime status and statistics
//	GET    /apis/v2/metrics                 Prometheus exposition (see MetricsHandler)
//	GET    /apis/v2/loglevel                the log level: {"level": "INFO"}
//	PUT    /apis/v2/loglevel                change it: {"level": "debug"}
//
// Responses are JSON, or YAML when the request asks for it with
// "Accept: application/yaml" or "?format=yaml". Errors are always JSON,
// {"code": N, "message": "..."}: 400 for a bad spec (the message names kind,
// name, field and line), 404 for a missing object, 409 for a name taken.
//
// Without WithAdminToken the API answers only clients on loopback
// addresses or, with WithAdminTLS, clients with a verified certificate
// (403 otherwise); with a token every request needs
// "Authorization: Bearer <token>" (401 otherwise). Before that, a request
// whose Host is neither a loopback name nor one of WithAdminHosts is
// refused (403: DNS rebinding), and so is a state-changing request that a
// browser sends from another origin (403: cross-site request forgery,
// judged by Sec-Fetch-Site or Origin). ListenAdmin opens its listener.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	p := AdminPrefix
	mux.HandleFunc("GET "+p+"/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeOut(w, r, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET "+p+"/object-kinds", g.adminObjectKinds)
	mux.HandleFunc("GET "+p+"/filter-kinds", g.adminFilterKinds)
	mux.HandleFunc("GET "+p+"/objects", g.adminList)
	mux.HandleFunc("POST "+p+"/objects", g.adminWrite(modeCreate))
	mux.HandleFunc("PUT "+p+"/objects", g.adminWrite(modeApply))
	mux.HandleFunc("GET "+p+"/objects/{name}", g.adminGet)
	mux.HandleFunc("PUT "+p+"/objects/{name}", g.adminWrite(modeUpdate))
	mux.HandleFunc("DELETE "+p+"/objects/{name}", g.adminDelete)
	mux.HandleFunc("GET "+p+"/status/objects", g.adminStatus)
	mux.HandleFunc("GET "+p+"/status/objects/{name}", g.adminStatus)
	g.adminObservability(mux)
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "no such admin endpoint: "+r.Method+" "+r.URL.Path)
	})
	return g.adminGuard(g.adminAuth(mux))
}

func (g *Gateway) adminAuth(next http.Handler) http.Handler {
	token := g.s.adminToken
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
				writeError(w, r, http.StatusUnauthorized, "a valid bearer token is required")
				return
			}
		} else if !loopback(r.RemoteAddr) && !g.adminClientVerified(r) {
			writeError(w, r, http.StatusForbidden, "the admin API answers loopback clients only unless a token or client certificates are configured")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopback reports whether remote, a RemoteAddr as net/http sets it
// (host:port), is a loopback address. Anything else, including an address
// without a port that middleware may have put there, is not.
func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type kindInfo struct {
	Kind        string   `json:"kind" yaml:"kind"`
	Aliases     []string `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	Category    string   `json:"category,omitempty" yaml:"category,omitempty"`
	Description string   `json:"description,omitempty" yaml:"description,omitempty"`
	Results     []string `json:"results,omitempty" yaml:"results,omitempty"`
}

func (g *Gateway) adminObjectKinds(w http.ResponseWriter, r *http.Request) {
	var out []kindInfo
	for _, k := range g.ObjectKinds() {
		out = append(out, kindInfo{Kind: k.Kind, Aliases: k.Aliases, Category: k.Category.String(), Description: k.Description})
	}
	writeOut(w, r, http.StatusOK, out)
}

func (g *Gateway) adminFilterKinds(w http.ResponseWriter, r *http.Request) {
	var out []kindInfo
	for _, k := range g.FilterKinds() {
		ki := kindInfo{Kind: k.Name, Description: k.Description}
		for _, res := range k.Results {
			ki.Results = append(ki.Results, string(res))
		}
		out = append(out, ki)
	}
	writeOut(w, r, http.StatusOK, out)
}

func (g *Gateway) adminList(w http.ResponseWriter, r *http.Request) {
	kind := r.URL.Query().Get("kind")
	if kind != "" {
		if _, ok := g.kinds[kind]; !ok {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("unknown object kind %q", kind))
			return
		}
	}
	specs := g.List(kind)
	if wantYAML(r) {
		var b bytes.Buffer
		for i, s := range specs {
			if i > 0 {
				b.WriteString("---\n")
			}
			b.Write(s.YAML())
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b.Bytes())
		return
	}
	out := make([]map[string]any, len(specs))
	for i, s := range specs {
		out[i] = s.Value()
	}
	writeOut(w, r, http.StatusOK, out)
}

func (g *Gateway) adminGet(w http.ResponseWriter, r *http.Request) {
	s, ok := g.Get("", r.PathValue("name"))
	if !ok {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("object %q not found", r.PathValue("name")))
		return
	}
	if wantYAML(r) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(s.YAML())
		return
	}
	writeOut(w, r, http.StatusOK, s.Value())
}

func (g *Gateway) adminWrite(mode applyMode) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("spec larger than %d bytes", maxAdminBody))
			return
		}
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
		specs, err := ParseSpecs(bytes.NewReader(body))
		if err != nil {
			writeError(w, r, http.StatusBadRequest, err.Error())
			return
		}
		if len(specs) == 0 {
			writeError(w, r, http.StatusBadRequest, "no object in the request body")
			return
		}
		if name := r.PathValue("name"); name != "" {
			if len(specs) != 1 || specs[0].Name != name {
				writeError(w, r, http.StatusBadRequest, fmt.Sprintf("the body must hold exactly the object %q named in the path", name))
				return
			}
		}
		if err := g.change(r.Context(), specs, mode); err != nil {
			writeError(w, r, errorStatus(err), err.Error())
			return
		}
		code := http.StatusOK
		if mode == modeCreate {
			code = http.StatusCreated
		}
		names := make([]map[string]string, len(specs))
		for i, s := range specs {
			names[i] = map[string]string{"kind": s.Kind, "name": s.Name}
		}
		writeOut(w, r, code, map[string]any{"objects": names})
	}
}

func (g *Gateway) adminDelete(w http.ResponseWriter, r *http.Request) {
	if err := g.Delete(r.Context(), "", r.PathValue("name")); err != nil {
		writeError(w, r, errorStatus(err), err.Error())
		return
	}
	writeOut(w, r, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
}

func (g *Gateway) adminStatus(w http.ResponseWriter, r *http.Request) {
	st := g.Status()
	name := r.PathValue("name")
	if name == "" {
		writeOut(w, r, http.StatusOK, st)
		return
	}
	for _, o := range st.Objects {
		if o.Name == name {
			writeOut(w, r, http.StatusOK, o)
			return
		}
	}
	writeError(w, r, http.StatusNotFound, fmt.Sprintf("object %q not found", name))
}

func errorStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists):
		return http.StatusConflict
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrBadSpec), errors.Is(err, ErrUnknownKind):
		return http.StatusBadRequest
	}
	var oe *ObjectError
	if errors.As(err, &oe) {
		// Listening failed, an inherit failed: the spec is valid, the
		// situation is not.
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func wantYAML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "yaml"
	}
	a := r.Header.Get("Accept")
	return strings.Contains(a, "yaml")
}

func writeOut(w http.ResponseWriter, r *http.Request, code int, v any) {
	if wantYAML(r) {
		b, err := yaml.Marshal(v)
		if err == nil {
			w.Header().Set("Content-Type", "application/yaml")
			w.WriteHeader(code)
			w.Write(b)
			return
		}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeError answers with a JSON error whatever format was asked for, so
// that every client can read the message.
func writeError(w http.ResponseWriter, _ *http.Request, code int, msg string) {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
