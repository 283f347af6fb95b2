package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice"
)

// Defaults of the client commands.
const (
	defaultServer  = "http://127.0.0.1:2381"
	clientTimeout  = time.Minute
	maxAPIResponse = 64 << 20
)

// Output formats.
const (
	formatYAML  = "yaml"
	formatJSON  = "json"
	formatTable = "table"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	server string
	token  string
	output string
}

// addClientFlags registers the client flags; formats describes the output
// formats for the usage text.
func addClientFlags(fs *flag.FlagSet, formats string) *clientFlags {
	cf := &clientFlags{}
	fs.StringVar(&cf.server, "server", defaultServer, "`URL` of the admin API; $SLUICE_SERVER sets another default")
	// The default stays out of the flag so that usage never shows a token.
	fs.StringVar(&cf.token, "token", "", "bearer `token` for the admin API (default $SLUICE_TOKEN)")
	fs.StringVar(&cf.output, "o", "", "output `format`: "+formats)
	return cf
}

// client resolves the flags and the environment into an API client; allowed
// lists the output formats the command supports, the first being its
// default.
func (cf *clientFlags) client(c *cli, fs *flag.FlagSet, allowed ...string) (*apiClient, error) {
	if !flagWasSet(fs, "server") {
		if s := c.getenv("SLUICE_SERVER"); s != "" {
			cf.server = s
		}
	}
	if !flagWasSet(fs, "token") {
		cf.token = c.getenv("SLUICE_TOKEN")
	}
	if cf.output == "" && len(allowed) > 0 {
		cf.output = allowed[0]
	}
	if len(allowed) > 0 && !slices.Contains(allowed, cf.output) {
		return nil, usagef("-o %q: want one of %s", cf.output, strings.Join(allowed, ", "))
	}
	api, err := newAPIClient(c.ctx, cf.server, cf.token)
	if err != nil {
		return nil, err
	}
	if api.token != "" && api.base.Scheme == "http" && !isLoopbackHost(api.base.Hostname()) {
		fmt.Fprintf(c.stderr, "sluice: warning: the token is sent to %s unencrypted; use https\n", api.base.Redacted())
	}
	return api, nil
}

// apiClient calls the admin REST API.
type apiClient struct {
	ctx   context.Context
	base  *url.URL // the server, without AdminPrefix
	token string
	hc    *http.Client
}

func newAPIClient(ctx context.Context, server, token string) (*apiClient, error) {
	raw := server
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The flag's value may carry credentials: do not echo it back.
		return nil, usagef("-server: want a URL like %s", defaultServer)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &apiClient{
		ctx:   ctx,
		base:  u,
		token: token,
		hc: &http.Client{
			Transport: tr,
			Timeout:   clientTimeout,
			// The admin API does not redirect; following one would send the
			// token somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// close releases the client's idle connections.
func (a *apiClient) close() { a.hc.CloseIdleConnections() }

// apiError is an error answered by the admin API.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string { return e.message }

// call sends a request to the admin API at AdminPrefix+path and returns
// the response body, in YAML if asYAML, else JSON. A response other than
// 2xx is an *apiError holding the server's message.
func (a *apiClient) call(method, path string, query url.Values, body []byte, asYAML bool) ([]byte, error) {
	resp, data, err := a.send(method, path, query, body, asYAML)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	msg, ok := errorMessage(resp, data)
	if !ok && method == http.MethodGet && asYAML {
		// The server answers errors in the format asked for; ask again in
		// JSON, which the client reads without a YAML parser.
		if resp2, data2, err := a.send(method, path, query, nil, false); err == nil && resp2.StatusCode/100 != 2 {
			resp, data = resp2, data2
			msg, ok = errorMessage(resp, data)
		}
	}
	if !ok {
		msg = strings.TrimSpace(string(data))
		if msg == "" {
			msg = resp.Status
		}
	}
	return nil, &apiError{status: resp.StatusCode, message: msg}
}

func (a *apiClient) send(method, path string, query url.Values, body []byte, asYAML bool) (*http.Response, []byte, error) {
	// path is escaped already (objectPath).
	target := a.base.String() + sluice.AdminPrefix + path
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if asYAML {
		q.Set("format", formatYAML)
	}
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(a.ctx, method, target, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	if asYAML {
		req.Header.Set("Accept", "application/yaml")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("cannot reach the admin API at %s: %w", a.base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of %s: %w", a.base.Redacted(), err)
	}
	return resp, data, nil
}

// errorMessage returns the message of a JSON error body
// {"code": N, "message": "..."}.
func errorMessage(resp *http.Response, data []byte) (string, bool) {
	if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return "", false
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil || e.Message == "" {
		return "", false
	}
	return e.Message, true
}

// getJSON GETs path and decodes its JSON answer into v.
func (a *apiClient) getJSON(path string, query url.Values, v any) error {
	data, err := a.call(http.MethodGet, path, query, nil, false)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", sluice.AdminPrefix+path, err)
	}
	return nil
}

// objectPath is the API path of the object called name.
func objectPath(prefix, name string) string {
	return prefix + "/" + url.PathEscape(name)
}
