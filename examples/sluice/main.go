package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills the process the usual way.
	context.AfterFunc(ctx, stop)
	// Only the real process upgrades itself: run, which tests call, does not.
	c := &cli{ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, hotUpgrade: true}
	code := c.main(os.Args[1:])
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command failed: an API error, a bad spec, a port in use
	exitUsage = 2 // the command line is wrong
)

// run runs the command line args and returns the exit status. Serving
// commands run until ctx is cancelled.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return c.main(args)
}

// cli is one invocation of the binary.
type cli struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// hotUpgrade lets "server" replace itself (see upgrade.go); only one
	// such process can be in a program.
	hotUpgrade bool
}

// command is one (sub)command. setup registers the command's flags on fs
// and returns what to do with the positional arguments once they are
// parsed.
type command struct {
	name  string // "server", "object get"
	args  string // the synopsis after the name
	short string // one line for the command list
	long  string // more help, printed above the flags
	setup func(c *cli, fs *flag.FlagSet) action
}

type action func(args []string) error

func (c *cli) commands() []*command {
	return []*command{
		c.demoCommand(),
		c.serverCommand(),
		c.mirrorCommand(),
		c.createCommand(),
		c.applyCommand(),
		c.updateCommand(),
		c.getCommand(),
		c.describeCommand(),
		c.deleteCommand(),
		c.kindsCommand(),
		c.statusCommand(),
		c.topCommand(),
		c.healthCommand(),
		c.upgradeCommand(),
		c.memberListCommand(),
	}
}

func (c *cli) lookup(name string) *command {
	for _, cmd := range c.commands() {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func (c *cli) main(args []string) int {
	if len(args) == 0 {
		return c.exec(c.lookup("demo"), nil)
	}
	switch first := args[0]; {
	case first == "help":
		return c.help(args[1:])
	case isHelp(first):
		c.usage(c.stdout)
		return exitOK
	case strings.HasPrefix(first, "-"):
		// Flags alone configure the demo: sluice -listen 127.0.0.1:8080.
		return c.exec(c.lookup("demo"), args)
	case first == "member":
		return c.memberMain(args[1:])
	case first == "object":
		if len(args) == 1 {
			fmt.Fprintln(c.stderr, "sluice object: missing command")
			c.objectUsage(c.stderr)
			return exitUsage
		}
		if isHelp(args[1]) {
			c.objectUsage(c.stdout)
			return exitOK
		}
		if cmd := c.lookup("object " + args[1]); cmd != nil {
			return c.exec(cmd, args[2:])
		}
		fmt.Fprintf(c.stderr, "sluice object: unknown command %q\n", args[1])
		c.objectUsage(c.stderr)
		return exitUsage
	default:
		if cmd := c.lookup(first); cmd != nil {
			return c.exec(cmd, args[1:])
		}
		fmt.Fprintf(c.stderr, "sluice: unknown command %q\n", first)
		c.usage(c.stderr)
		return exitUsage
	}
}

// help prints the usage of the command named by args, or of the binary.
func (c *cli) help(args []string) int {
	name := strings.Join(args, " ")
	switch name {
	case "":
		c.usage(c.stdout)
		return exitOK
	case "object":
		c.objectUsage(c.stdout)
		return exitOK
	}
	cmd := c.lookup(name)
	if cmd == nil {
		fmt.Fprintf(c.stderr, "sluice help: unknown command %q\n", name)
		c.usage(c.stderr)
		return exitUsage
	}
	fs := c.flagSet(cmd)
	cmd.setup(c, fs)
	commandUsage(c.stdout, cmd, fs)
	return exitOK
}

func (c *cli) flagSet(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+cmd.name, flag.ContinueOnError)
	// Errors and usage are printed by exec, to the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// exec parses args for cmd and runs it.
func (c *cli) exec(cmd *command, args []string) int {
	fs := c.flagSet(cmd)
	act := cmd.setup(c, fs)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(c.stdout, cmd, fs)
		return exitOK
	}
	if err == nil {
		err = act(pos)
	}
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var xe *exitError
	switch {
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(c.stderr, "sluice %s: %v\n", cmd.name, err)
		commandUsage(c.stderr, cmd, fs)
		return exitUsage
	case errors.As(err, &xe):
		fmt.Fprintf(c.stderr, "sluice %s: %v\n", cmd.name, xe.err)
		return xe.code
	default:
		fmt.Fprintf(c.stderr, "sluice %s: %v\n", cmd.name, err)
		return exitFail
	}
}

// flagError marks an error of the flag package.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }

func isFlagError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe)
}

// usageError is a wrong command line: exit 2 with the command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitError ends the command with a given status and no usage text.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// parseArgs parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. After "--"
// everything is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &flagError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagWasSet reports whether the flag called name was given on the command
// line.
func flagWasSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: sluice %s %s\n\n%s\n", cmd.name, cmd.args, cmd.short)
	if cmd.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.long))
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `sluice is a standalone gateway built on the sluice library, and a client of its admin API.

Usage:
  sluice [demo] [flags]            run the quickstart: mirror backend, gateway and admin API
  sluice server [-f FILE] [flags]  serve the objects of FILE (- for stdin) and the admin API
  sluice mirror [-addr ADDR]       serve the echo backend alone
  sluice object COMMAND [flags]    manage the objects of a running gateway
  sluice member COMMAND [flags]    list the members of a cluster
  sluice health [flags]            check that the admin API answers
  sluice upgrade [flags]           replace a running server with a new process (hot upgrade)
  sluice help [COMMAND]            show the help of a command

`)
	c.objectCommands(w)
	fmt.Fprint(w, `
Client commands take -server URL (default $SLUICE_SERVER or http://127.0.0.1:2381),
-token T (default $SLUICE_TOKEN) and -o yaml|json|table.
Run "sluice help COMMAND" for a command's flags, e.g. "sluice help object get".
`)
}

func (c *cli) objectUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: sluice object COMMAND [flags]\n\n")
	c.objectCommands(w)
	fmt.Fprint(w, "\nRun \"sluice help object COMMAND\" for a command's flags.\n")
}

func (c *cli) objectCommands(w io.Writer) {
	fmt.Fprintln(w, "Object commands:")
	for _, cmd := range c.commands() {
		if name, ok := strings.CutPrefix(cmd.name, "object "); ok {
			fmt.Fprintf(w, "  %-32s %s\n", name+" "+cmd.args, cmd.short)
		}
	}
}
