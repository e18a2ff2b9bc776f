// Package nixbuild turns a flake and its process attributes into what the
// push step needs: it resolves the flake to a locked ref, builds each
// attribute from that ref, works out what kind of output each one is, and
// exports it into a workspace directory with an artifact.Manifest.
//
// Nix is run as a separate process with user input passed as separate
// arguments, never through a shell. Every Nix failure is a *NixError carrying
// the last lines of Nix's output.
package nixbuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Nix runs Nix: which binary, with which caches and settings. Its zero
// value runs the nix on PATH with the configured caches.
type Nix struct {
	// Nix is the nix binary; "nix" (looked up in PATH) if empty.
	Nix string
	// Substituters and TrustedPublicKeys are binary caches used in addition
	// to the configured ones, and the keys that sign them.
	Substituters      []string
	TrustedPublicKeys []string
	// NixConfFile is an extra nix.conf (for example with access-tokens for
	// private flakes), passed to Nix as NIX_USER_CONF_FILES.
	NixConfFile string
	// Sandbox builds in Nix's sandbox; off by default, since it needs
	// privileges that pods usually lack.
	Sandbox bool
	// Offline turns every substituter off (--option substituters ''), so a
	// build never reaches the network for binary caches.
	Offline bool
	// Store is the store Nix opens (--store), when not the default one.
	Store string
	// RequireSigs passes require-sigs = true on the command line, so no
	// nix.conf can accept unsigned paths from a substituter: set when the
	// store outlives the build (a build cache).
	RequireSigs bool
	// GCRootsDir, when set, receives GC roots for what Run built (see
	// CacheRootsDir), replacing those of the last run.
	GCRootsDir string
	// Timeout bounds a whole Resolve or Run; zero means no limit besides ctx.
	Timeout time.Duration
	// Stderr, if set, receives a live copy of Nix's output.
	Stderr io.Writer
}

// tailLines is how many lines of Nix's output a NixError keeps.
const tailLines = 20

// NixError is a failed Nix (or image stream script) invocation.
type NixError struct {
	// Op says what was being done ("nix build", "nix flake metadata", ...).
	Op string
	// Tail holds the last lines of the process's stderr.
	Tail string
	// Err is the underlying error: an *exec.ExitError, or the context's error
	// when the timeout expired or the build was cancelled.
	Err error
}

func (e *NixError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed", e.Op)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Tail != "" {
		fmt.Fprintf(&b, "\n%s", e.Tail)
	}
	return b.String()
}

func (e *NixError) Unwrap() error { return e.Err }

// waitDelay is how long a cancelled Nix gets to stop its builders after
// SIGTERM before it is killed.
const waitDelay = 10 * time.Second

func (o Nix) nixBinary() string {
	if o.Nix != "" {
		return o.Nix
	}
	return "nix"
}

// globalArgs are the arguments that come before every Nix subcommand.
func (o Nix) globalArgs() []string {
	args := []string{"--extra-experimental-features", "nix-command flakes"}
	if !o.Sandbox {
		// The sandbox needs privileges (namespaces, mounts) pods lack.
		args = append(args, "--option", "sandbox", "false")
	}
	if o.Store != "" {
		args = append(args, "--store", o.Store)
	}
	if o.RequireSigs {
		args = append(args, "--option", "require-sigs", "true")
	}
	if o.Offline {
		args = append(args, "--option", "substituters", "")
	} else if len(o.Substituters) > 0 {
		args = append(args, "--option", "extra-substituters", strings.Join(o.Substituters, " "))
	}
	// Keys matter offline too: checking a store's paths trusts them.
	if len(o.TrustedPublicKeys) > 0 {
		args = append(args, "--option", "extra-trusted-public-keys", strings.Join(o.TrustedPublicKeys, " "))
	}
	return args
}

// passedEnv are the variables Nix gets from the caller's environment; the
// rest (credentials such as HEROKU_API_KEY or KUBECONFIG among them) stay
// out of reach of the builds of user flakes.
var passedEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true, "TZ": true,
	"LANG": true, "LC_ALL": true, "SSL_CERT_FILE": true, "NIX_SSL_CERT_FILE": true,
	"XDG_CACHE_HOME": true, "XDG_CONFIG_HOME": true, "XDG_DATA_HOME": true,
	"http_proxy": true, "https_proxy": true, "no_proxy": true, "HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true,
}

func (o Nix) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if passedEnv[k] || strings.HasPrefix(k, "NIX_") {
			env = append(env, kv)
		}
	}
	if o.NixConfFile != "" {
		env = append(env, "NIX_USER_CONF_FILES="+o.NixConfFile)
	}
	return env
}

// withTimeout applies o.Timeout to ctx.
func (o Nix) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout > 0 {
		return context.WithTimeout(ctx, o.Timeout)
	}
	return context.WithCancel(ctx)
}

// nix runs `nix <global args> <args...>` and returns its stdout.
func (o Nix) nix(ctx context.Context, op string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	full := append(o.globalArgs(), args...)
	if err := o.run(ctx, op, o.nixBinary(), full, &stdout); err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}

// run executes name with args (no shell), stdout to out, stderr to a tail
// buffer and o.Stderr. A failure is a *NixError.
func (o Nix) run(ctx context.Context, op, name string, args []string, out io.Writer) error {
	if err := ctx.Err(); err != nil {
		return &NixError{Op: op, Err: err}
	}
	tail := &tailBuffer{}
	var stderr io.Writer = tail
	if o.Stderr != nil {
		stderr = io.MultiWriter(tail, o.Stderr)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = o.env()
	cmd.Stdout = out
	cmd.Stderr = stderr
	// SIGTERM lets Nix kill its builders (they run as other users, in their
	// own sessions) and release its locks; SIGKILL follows after waitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return &NixError{Op: op, Tail: tail.Tail(tailLines), Err: err}
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	buf []byte
}

// tailKeep bounds tailBuffer: enough for 20 long lines.
const tailKeep = 16 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= tailKeep {
		t.buf = append(t.buf[:0], p[len(p)-tailKeep:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - tailKeep; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// Tail returns the last n lines written, without trailing blank lines.
func (t *tailBuffer) Tail(n int) string {
	s := strings.TrimRight(string(t.buf), "\n\r\t ")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
