package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicegw/sluice"
)

// writeResult is the admin API's answer to a create, apply or update.
type writeResult struct {
	Objects []struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"objects"`
}

func (c *cli) createCommand() *command {
	return c.writeCommand("object create", http.MethodPost, "created",
		"Create the objects of a file, all or nothing.", `
FILE holds one or more objects as YAML (or JSON) documents separated by "---";
- reads stdin. They are sent in one request: if a spec is bad (the error names
its kind, name, field and line) or a name is taken, nothing changes.`)
}

func (c *cli) applyCommand() *command {
	return c.writeCommand("object apply", http.MethodPut, "applied",
		"Create or update the objects of a file, all or nothing.", `
FILE holds one or more objects as YAML (or JSON) documents separated by "---";
- reads stdin. They are sent in one request: if a spec is bad (the error names
its kind, name, field and line), nothing changes. Objects whose spec is
unchanged are left alone.`)
}

// writeCommand is create or apply: the whole file in one request.
func (c *cli) writeCommand(name, method, verb, short, long string) *command {
	return &command{
		name:  name,
		args:  "-f FILE|- [flags]",
		short: short,
		long:  long,
		setup: func(c *cli, fs *flag.FlagSet) action {
			return fileAction(c, fs, "YAML `file` of the objects; - reads stdin",
				func(api *apiClient, output, _ string, body []byte) error {
					return c.write(api, output, method, "/objects", body, verb)
				})
		},
	}
}

// apiAction is the action of a command that takes no argument and talks
// to the admin API.
func apiAction(c *cli, fs *flag.FlagSet, outputUsage string, run func(api *apiClient, output string) error) action {
	cf := addClientFlags(fs, outputUsage)
	return func(args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		api, err := cf.client(c, fs, formatTable, formatYAML, formatJSON)
		if err != nil {
			return err
		}
		defer api.close()
		return run(api, cf.output)
	}
}

// fileAction is the action of a command that sends a -f file to the admin
// API: it parses the flags, reads the file and calls run.
func fileAction(c *cli, fs *flag.FlagSet, fileUsage string, run func(api *apiClient, output, file string, body []byte) error) action {
	cf := addClientFlags(fs, "table (a line per object, the default), yaml or json")
	file := fs.String("f", "", fileUsage)
	return func(args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *file == "" {
			return usagef("-f is required")
		}
		api, err := cf.client(c, fs, formatTable, formatYAML, formatJSON)
		if err != nil {
			return err
		}
		defer api.close()
		body, err := c.readFile(*file)
		if err != nil {
			return err
		}
		return run(api, cf.output, *file, body)
	}
}

func (c *cli) write(api *apiClient, output, method, path string, body []byte, verb string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("no object in the file")
	}
	// Asked in JSON whatever the output, so that an error's message can be
	// read; the answer is small enough to turn into YAML here.
	data, err := api.call(method, path, nil, body, false)
	if err != nil {
		return err
	}
	if output == formatJSON {
		return c.print(data)
	}
	var res writeResult
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	if output == formatYAML {
		fmt.Fprintln(c.stdout, "objects:")
		for _, o := range res.Objects {
			fmt.Fprintf(c.stdout, "  - kind: %s\n    name: %s\n", yamlString(o.Kind), yamlString(o.Name))
		}
		return nil
	}
	for _, o := range res.Objects {
		fmt.Fprintf(c.stdout, "%s %s %s\n", o.Kind, o.Name, verb)
	}
	return nil
}

// yamlString returns s as a YAML scalar that reads back as the string s.
func yamlString(s string) string {
	plain := s != ""
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '-'):
		default:
			plain = false
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		plain = false
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}

func (c *cli) updateCommand() *command {
	return &command{
		name:  "object update",
		args:  "-f FILE|- [flags]",
		short: "Update one existing object from a file.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			return fileAction(c, fs, "YAML `file` holding the object; - reads stdin",
				func(api *apiClient, output, file string, body []byte) error {
					specs, err := sluice.ParseSpecs(bytes.NewReader(body))
					if err != nil {
						return fmt.Errorf("%s: %w", displayName(file), err)
					}
					if len(specs) != 1 {
						return fmt.Errorf("%s: update takes exactly one object, the file holds %d (use object apply for several)", displayName(file), len(specs))
					}
					return c.write(api, output, http.MethodPut, objectPath("/objects", specs[0].Name), body, "updated")
				})
		},
	}
}

func (c *cli) getCommand() *command {
	return &command{
		name:  "object get",
		args:  "[NAME] [flags]",
		short: "Print every object (a table) or one (YAML).",
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "table, yaml or json (default: table for a list, yaml for one object)")
			kind := fs.String("kind", "", "only objects of this `kind`")
			return func(args []string) error {
				switch len(args) {
				case 0:
					api, err := cf.client(c, fs, formatTable, formatYAML, formatJSON)
					if err != nil {
						return err
					}
					defer api.close()
					return c.list(api, cf.output, *kind)
				case 1:
					api, err := cf.client(c, fs, formatYAML, formatJSON, formatTable)
					if err != nil {
						return err
					}
					defer api.close()
					return c.get(api, cf.output, *kind, args[0])
				}
				return usagef("want at most one NAME, got %d arguments", len(args))
			}
		},
	}
}

func kindQuery(kind string) url.Values {
	if kind == "" {
		return nil
	}
	return url.Values{"kind": {kind}}
}

func (c *cli) list(api *apiClient, output, kind string) error {
	if output != formatTable {
		data, err := api.call(http.MethodGet, "/objects", kindQuery(kind), nil, output == formatYAML)
		if err != nil {
			return err
		}
		return c.print(data)
	}
	var specs []map[string]any
	if err := api.getJSON("/objects", kindQuery(kind), &specs); err != nil {
		return err
	}
	rows := make([][]string, len(specs))
	for i, s := range specs {
		rows[i] = []string{str(s["name"]), str(s["kind"])}
	}
	return c.table([]string{"NAME", "KIND"}, rows)
}

func (c *cli) get(api *apiClient, output, kind, name string) error {
	if kind != "" {
		// The API looks objects up by name; the list knows kinds and
		// their aliases.
		var specs []map[string]any
		if err := api.getJSON("/objects", kindQuery(kind), &specs); err != nil {
			return err
		}
		found := false
		for _, s := range specs {
			found = found || str(s["name"]) == name
		}
		if !found {
			return fmt.Errorf("%s %q not found", kind, name)
		}
	}
	path := objectPath("/objects", name)
	if output != formatTable {
		data, err := api.call(http.MethodGet, path, nil, nil, output == formatYAML)
		if err != nil {
			return err
		}
		return c.print(data)
	}
	var spec map[string]any
	if err := api.getJSON(path, nil, &spec); err != nil {
		return err
	}
	return c.table([]string{"NAME", "KIND"}, [][]string{{str(spec["name"]), str(spec["kind"])}})
}

func (c *cli) describeCommand() *command {
	return &command{
		name:  "object describe",
		args:  "NAME [flags]",
		short: "Print an object's spec and runtime status.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "yaml (the default) or json")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want one NAME")
				}
				api, err := cf.client(c, fs, formatYAML, formatJSON)
				if err != nil {
					return err
				}
				defer api.close()
				asYAML := cf.output == formatYAML
				spec, err := api.call(http.MethodGet, objectPath("/objects", args[0]), nil, nil, asYAML)
				if err != nil {
					return err
				}
				status, err := api.call(http.MethodGet, objectPath("/status/objects", args[0]), nil, nil, asYAML)
				if err != nil {
					return err
				}
				if asYAML {
					var b bytes.Buffer
					b.WriteString("# spec\n")
					b.Write(withNewline(spec))
					b.WriteString("---\n# status\n")
					b.Write(status)
					return c.print(b.Bytes())
				}
				out, err := json.MarshalIndent(struct {
					Spec   json.RawMessage `json:"spec"`
					Status json.RawMessage `json:"status"`
				}{spec, status}, "", "  ")
				if err != nil {
					return err
				}
				return c.print(out)
			}
		},
	}
}

func (c *cli) deleteCommand() *command {
	return &command{
		name:  "object delete",
		args:  "NAME...|-f FILE [flags]",
		short: "Delete objects by name, or those named in a file.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "table (the default)")
			file := fs.String("f", "", "YAML `file` naming the objects to delete; - reads stdin")
			return func(args []string) error {
				if (len(args) == 0) == (*file == "") {
					return usagef("give either NAMEs or -f FILE")
				}
				api, err := cf.client(c, fs, formatTable)
				if err != nil {
					return err
				}
				defer api.close()
				type target struct{ kind, name string }
				var targets []target
				for _, a := range args {
					targets = append(targets, target{name: a})
				}
				if *file != "" {
					body, err := c.readFile(*file)
					if err != nil {
						return err
					}
					specs, err := sluice.ParseSpecs(bytes.NewReader(body))
					if err != nil {
						return fmt.Errorf("%s: %w", displayName(*file), err)
					}
					if len(specs) == 0 {
						return fmt.Errorf("%s: no object in the file", displayName(*file))
					}
					for _, s := range specs {
						targets = append(targets, target{s.Kind, s.Name})
					}
				}
				// Every object is tried; the errors are reported together.
				var errs []error
				for _, t := range targets {
					if _, err := api.call(http.MethodDelete, objectPath("/objects", t.name), nil, nil, false); err != nil {
						errs = append(errs, err)
						continue
					}
					if t.kind != "" {
						fmt.Fprintf(c.stdout, "%s %s deleted\n", t.kind, t.name)
					} else {
						fmt.Fprintf(c.stdout, "%s deleted\n", t.name)
					}
				}
				return errors.Join(errs...)
			}
		},
	}
}

// kindInfo is an entry of /object-kinds and /filter-kinds.
type kindInfo struct {
	Kind        string   `json:"kind"`
	Aliases     []string `json:"aliases"`
	Category    string   `json:"category"`
	Description string   `json:"description"`
	Results     []string `json:"results"`
}

func (c *cli) kindsCommand() *command {
	return &command{
		name:  "object kinds",
		args:  "[flags]",
		short: "List the object kinds and the filter kinds.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			return apiAction(c, fs, "table (the default), yaml or json", func(api *apiClient, output string) error {
				asYAML := output == formatYAML
				objects, err := api.call(http.MethodGet, "/object-kinds", nil, nil, asYAML)
				if err != nil {
					return err
				}
				filters, err := api.call(http.MethodGet, "/filter-kinds", nil, nil, asYAML)
				if err != nil {
					return err
				}
				switch output {
				case formatYAML:
					var b bytes.Buffer
					b.WriteString("objectKinds:\n")
					b.Write(indent(objects, "  "))
					b.WriteString("filterKinds:\n")
					b.Write(indent(filters, "  "))
					return c.print(b.Bytes())
				case formatJSON:
					out, err := json.MarshalIndent(map[string]json.RawMessage{
						"objectKinds": objects, "filterKinds": filters,
					}, "", "  ")
					if err != nil {
						return err
					}
					return c.print(out)
				}
				var ok, fk []kindInfo
				if err := json.Unmarshal(objects, &ok); err != nil {
					return fmt.Errorf("decoding the object kinds: %w", err)
				}
				if err := json.Unmarshal(filters, &fk); err != nil {
					return fmt.Errorf("decoding the filter kinds: %w", err)
				}
				rows := make([][]string, len(ok))
				for i, k := range ok {
					rows[i] = []string{k.Kind, k.Category, strings.Join(k.Aliases, ","), k.Description}
				}
				if err := c.table([]string{"OBJECT KIND", "CATEGORY", "ALIASES", "DESCRIPTION"}, rows); err != nil {
					return err
				}
				fmt.Fprintln(c.stdout)
				rows = make([][]string, len(fk))
				for i, k := range fk {
					rows[i] = []string{k.Kind, strings.Join(k.Results, ","), k.Description}
				}
				return c.table([]string{"FILTER KIND", "RESULTS", "DESCRIPTION"}, rows)
			})
		},
	}
}

func (c *cli) statusCommand() *command {
	return &command{
		name:  "object status",
		args:  "[NAME] [flags]",
		short: "Print the runtime status of every object, or one object's statistics.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			cf := addClientFlags(fs, "yaml (the default for every object), json or table (the default for one NAME: its statistics)")
			return func(args []string) error {
				if len(args) > 1 {
					return usagef("want at most one NAME, got %d arguments", len(args))
				}
				if len(args) == 1 && cf.output == "" {
					cf.output = formatTable
				}
				api, err := cf.client(c, fs, formatYAML, formatJSON, formatTable)
				if err != nil {
					return err
				}
				defer api.close()
				path := "/status/objects"
				if len(args) == 1 {
					path = objectPath(path, args[0])
				}
				if cf.output != formatTable {
					data, err := api.call(http.MethodGet, path, nil, nil, cf.output == formatYAML)
					if err != nil {
						return err
					}
					return c.print(data)
				}
				if len(args) == 1 {
					var o objectStats
					if err := api.getJSON(path, nil, &o); err != nil {
						return err
					}
					return c.statsTable(&o)
				}
				var st sluice.Status
				if err := api.getJSON(path, nil, &st); err != nil {
					return err
				}
				objects := st.Objects
				rows := make([][]string, len(objects))
				for i, o := range objects {
					rows[i] = []string{o.Name, o.Kind, strconv.FormatInt(o.Revision, 10), o.Error}
				}
				return c.table([]string{"NAME", "KIND", "REVISION", "ERROR"}, rows)
			}
		},
	}
}

func (c *cli) healthCommand() *command {
	return &command{
		name:  "health",
		args:  "[flags]",
		short: "Check that the admin API answers; exit 0 if it is healthy.",
		setup: func(c *cli, fs *flag.FlagSet) action {
			return apiAction(c, fs, "table (the default), yaml or json", func(api *apiClient, output string) error {
				data, err := api.call(http.MethodGet, "/healthz", nil, nil, output == formatYAML)
				if err != nil {
					return err
				}
				if output != formatTable {
					return c.print(data)
				}
				var h struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(data, &h); err != nil {
					return fmt.Errorf("decoding the answer: %w", err)
				}
				if h.Status != "ok" {
					return fmt.Errorf("unhealthy: status %q", h.Status)
				}
				fmt.Fprintln(c.stdout, h.Status)
				return nil
			})
		},
	}
}

// print writes data to stdout, ending with a newline.
func (c *cli) print(data []byte) error {
	_, err := c.stdout.Write(withNewline(data))
	return err
}

func withNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(b[:len(b):len(b)], '\n')
	}
	return b
}

// indent indents every non-empty line of a YAML document, nesting it under
// a key.
func indent(b []byte, prefix string) []byte {
	var out bytes.Buffer
	for line := range strings.Lines(string(withNewline(b))) {
		if strings.TrimSpace(line) != "" {
			out.WriteString(prefix)
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

func (c *cli) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	writeRow(tw, header)
	for _, r := range rows {
		writeRow(tw, r)
	}
	return tw.Flush()
}

func writeRow(w io.Writer, cells []string) {
	for i, cell := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		// A cell must not break the table.
		io.WriteString(w, strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, cell))
	}
	io.WriteString(w, "\n")
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
